//! Who each service is on the broker. With `GUICHET_AMQP_URL` alone every
//! service connects as the URL's user (the development default). An operator
//! who gives a service a user of its own (`GUICHET_AMQP_USER_<SERVICE>` and
//! `GUICHET_AMQP_PASSWORD_<SERVICE>`) has it connect as that user, to the
//! URL's host and vhost, with the least permissions it needs
//! (`infra/rabbitmq/users.sh`): a channel can then publish only its own
//! routing key, and every message carries its publisher in `user_id`, which
//! the broker checks, so instruction knows which service sent a dossier.

use guichet_dossier::Channel;

/// The broker users of the services that have one. User names are not
/// secret (instruction is told the channels' users to check publishers);
/// passwords are, and never print.
#[derive(Clone, Default, clap::Args)]
pub struct BusUsers {
    /// RabbitMQ user of `instruction` (its password in
    /// GUICHET_AMQP_PASSWORD_INSTRUCTION). Unset: the user of GUICHET_AMQP_URL.
    #[arg(long, env = "GUICHET_AMQP_USER_INSTRUCTION")]
    pub amqp_user_instruction: Option<String>,
    /// The password of GUICHET_AMQP_USER_INSTRUCTION.
    #[arg(
        long,
        env = "GUICHET_AMQP_PASSWORD_INSTRUCTION",
        hide_env_values = true
    )]
    pub amqp_password_instruction: Option<String>,

    /// RabbitMQ user of `intake-web`; instruction takes `web` dossiers from
    /// this user only once any channel has a user.
    #[arg(long, env = "GUICHET_AMQP_USER_INTAKE_WEB")]
    pub amqp_user_intake_web: Option<String>,
    /// The password of GUICHET_AMQP_USER_INTAKE_WEB.
    #[arg(long, env = "GUICHET_AMQP_PASSWORD_INTAKE_WEB", hide_env_values = true)]
    pub amqp_password_intake_web: Option<String>,

    /// RabbitMQ user of `intake-ccc` (`ccc` dossiers, `report.*` events).
    #[arg(long, env = "GUICHET_AMQP_USER_INTAKE_CCC")]
    pub amqp_user_intake_ccc: Option<String>,
    /// The password of GUICHET_AMQP_USER_INTAKE_CCC.
    #[arg(long, env = "GUICHET_AMQP_PASSWORD_INTAKE_CCC", hide_env_values = true)]
    pub amqp_password_intake_ccc: Option<String>,

    /// RabbitMQ user of `intake-pan` (`pan` dossiers, `appointment.*` events).
    #[arg(long, env = "GUICHET_AMQP_USER_INTAKE_PAN")]
    pub amqp_user_intake_pan: Option<String>,
    /// The password of GUICHET_AMQP_USER_INTAKE_PAN.
    #[arg(long, env = "GUICHET_AMQP_PASSWORD_INTAKE_PAN", hide_env_values = true)]
    pub amqp_password_intake_pan: Option<String>,

    /// RabbitMQ user of `intake-postal` (`postal` dossiers, reads
    /// `postal.letters`).
    #[arg(long, env = "GUICHET_AMQP_USER_INTAKE_POSTAL")]
    pub amqp_user_intake_postal: Option<String>,
    /// The password of GUICHET_AMQP_USER_INTAKE_POSTAL.
    #[arg(
        long,
        env = "GUICHET_AMQP_PASSWORD_INTAKE_POSTAL",
        hide_env_values = true
    )]
    pub amqp_password_intake_postal: Option<String>,

    /// RabbitMQ user of `notifier` (reads `notifier.case-events`, publishes
    /// `letter.*` events for the mailroom).
    #[arg(long, env = "GUICHET_AMQP_USER_NOTIFIER")]
    pub amqp_user_notifier: Option<String>,
    /// The password of GUICHET_AMQP_USER_NOTIFIER.
    #[arg(long, env = "GUICHET_AMQP_PASSWORD_NOTIFIER", hide_env_values = true)]
    pub amqp_password_notifier: Option<String>,
}

/// A user name and its password, as a service logs in with them.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &"***")
            .finish()
    }
}

/// The service that declares the topology when services have users of their
/// own: the one that consumes the dossiers and publishes the events, and the
/// only one given the right to configure. The others find it declared; until
/// it is, their publishes and consumers fail and are retried.
pub const TOPOLOGY_OWNER: &str = "instruction";

/// Which channel's dossiers each intake service publishes.
pub const CHANNEL_SERVICES: [(Channel, &str); 4] = [
    (Channel::Web, "intake-web"),
    (Channel::Ccc, "intake-ccc"),
    (Channel::Pan, "intake-pan"),
    (Channel::Postal, "intake-postal"),
];

impl BusUsers {
    fn entry(&self, service: &str) -> Option<(&Option<String>, &Option<String>)> {
        Some(match service {
            "instruction" => (&self.amqp_user_instruction, &self.amqp_password_instruction),
            "intake-web" => (&self.amqp_user_intake_web, &self.amqp_password_intake_web),
            "intake-ccc" => (&self.amqp_user_intake_ccc, &self.amqp_password_intake_ccc),
            "intake-pan" => (&self.amqp_user_intake_pan, &self.amqp_password_intake_pan),
            "intake-postal" => (
                &self.amqp_user_intake_postal,
                &self.amqp_password_intake_postal,
            ),
            "notifier" => (&self.amqp_user_notifier, &self.amqp_password_notifier),
            _ => return None,
        })
    }

    fn entry_mut(&mut self, service: &str) -> Option<(&mut Option<String>, &mut Option<String>)> {
        Some(match service {
            "instruction" => (
                &mut self.amqp_user_instruction,
                &mut self.amqp_password_instruction,
            ),
            "intake-web" => (
                &mut self.amqp_user_intake_web,
                &mut self.amqp_password_intake_web,
            ),
            "intake-ccc" => (
                &mut self.amqp_user_intake_ccc,
                &mut self.amqp_password_intake_ccc,
            ),
            "intake-pan" => (
                &mut self.amqp_user_intake_pan,
                &mut self.amqp_password_intake_pan,
            ),
            "intake-postal" => (
                &mut self.amqp_user_intake_postal,
                &mut self.amqp_password_intake_postal,
            ),
            "notifier" => (
                &mut self.amqp_user_notifier,
                &mut self.amqp_password_notifier,
            ),
            _ => return None,
        })
    }

    /// The user `service` connects as, when it has one of its own. A user
    /// without a password logs in with an empty one (the broker refuses it
    /// unless set up so).
    pub fn credentials(&self, service: &str) -> Option<Credentials> {
        let (user, password) = self.entry(service)?;
        let user = user.as_deref().filter(|u| !u.is_empty())?;
        Some(Credentials {
            user: user.to_string(),
            password: password.clone().unwrap_or_default(),
        })
    }

    /// Gives `service` its own user (tests, embedders).
    pub fn set(&mut self, service: &str, credentials: Credentials) {
        if let Some((user, password)) = self.entry_mut(service) {
            *user = Some(credentials.user);
            *password = Some(credentials.password);
        }
    }

    /// The user allowed to publish each channel's dossiers, once any channel
    /// has a user of its own; `None` when none has (every service connects
    /// as the one user of `GUICHET_AMQP_URL`, and the publisher tells nothing).
    pub fn publishers(&self) -> Option<Publishers> {
        let users: Vec<(Channel, String)> = CHANNEL_SERVICES
            .iter()
            .filter_map(|(channel, service)| self.credentials(service).map(|c| (*channel, c.user)))
            .collect();
        (!users.is_empty()).then_some(Publishers { users })
    }
}

impl std::fmt::Debug for BusUsers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut users = f.debug_map();
        for service in ["instruction", "notifier"]
            .into_iter()
            .chain(CHANNEL_SERVICES.iter().map(|(_, s)| *s))
        {
            if let Some(c) = self.credentials(service) {
                users.entry(&service, &c);
            }
        }
        users.finish()
    }
}

/// Who may publish which channel's dossiers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publishers {
    users: Vec<(Channel, String)>,
}

/// Why a dossier's publisher is not the one its channel allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WrongPublisher {
    /// The message names no publisher (`user_id` unset).
    Unnamed,
    /// Published by `user`, who does not publish `channel`'s dossiers.
    NotTheChannels { channel: Channel, user: String },
}

impl Publishers {
    /// Whether `user_id` may publish a dossier of `channel`.
    pub fn check(&self, channel: Channel, user_id: Option<&str>) -> Result<(), WrongPublisher> {
        let user = user_id
            .filter(|u| !u.is_empty())
            .ok_or(WrongPublisher::Unnamed)?;
        if self.users.iter().any(|(c, u)| *c == channel && u == user) {
            Ok(())
        } else {
            Err(WrongPublisher::NotTheChannels {
                channel,
                user: user.to_string(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users() -> BusUsers {
        let mut users = BusUsers::default();
        for (service, user) in [
            ("intake-web", "guichet-web"),
            ("intake-postal", "guichet-postal"),
        ] {
            users.set(
                service,
                Credentials {
                    user: user.into(),
                    password: "s3cret".into(),
                },
            );
        }
        users
    }

    #[test]
    fn no_users_no_check() {
        assert_eq!(BusUsers::default().publishers(), None);
        assert_eq!(BusUsers::default().credentials("intake-web"), None);
    }

    #[test]
    fn publishers_table() {
        let publishers = users().publishers().expect("users configured");
        let table = [
            (Channel::Web, Some("guichet-web"), true),
            (Channel::Postal, Some("guichet-postal"), true),
            (Channel::Web, Some("guichet-postal"), false),
            (Channel::Postal, Some("guichet-web"), false),
            // A channel without a user: nobody may publish it.
            (Channel::Ccc, Some("guichet-web"), false),
            (Channel::Web, None, false),
            (Channel::Web, Some(""), false),
            (Channel::Web, Some("guest"), false),
        ];
        for (channel, user, allowed) in table {
            assert_eq!(
                publishers.check(channel, user).is_ok(),
                allowed,
                "{channel} by {user:?}"
            );
        }
        assert_eq!(
            publishers.check(Channel::Web, None),
            Err(WrongPublisher::Unnamed)
        );
    }

    #[test]
    fn passwords_never_print() {
        let shown = format!("{:?}", users());
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("guichet-web"), "{shown}");
    }
}
