//! Every word the pages show, from the message files (`gateway/locales`,
//! Fluent): none is in the code. French is the reference; English has the
//! same messages (a test keeps the two sets equal).

use std::sync::LazyLock;

use fluent_bundle::concurrent::FluentBundle;
use fluent_bundle::{FluentArgs, FluentResource};

use super::Lang;

/// The message files of each language: the persons' pages, the agents'.
pub const FR_SOURCES: [(&str, &str); 2] = [
    ("pages.ftl", include_str!("../../locales/fr/pages.ftl")),
    ("agents.ftl", include_str!("../../locales/fr/agents.ftl")),
];
pub const EN_SOURCES: [(&str, &str); 2] = [
    ("pages.ftl", include_str!("../../locales/en/pages.ftl")),
    ("agents.ftl", include_str!("../../locales/en/agents.ftl")),
];

type Bundle = FluentBundle<FluentResource>;

static FR: LazyLock<Bundle> = LazyLock::new(|| bundle("fr", &FR_SOURCES));
static EN: LazyLock<Bundle> = LazyLock::new(|| bundle("en", &EN_SOURCES));

fn bundle(lang: &str, sources: &[(&str, &str)]) -> Bundle {
    let mut bundle = FluentBundle::new_concurrent(vec![lang.parse().expect("a language tag")]);
    // The pages are HTML, escaped by the templates: no bidi isolation marks.
    bundle.set_use_isolating(false);
    for (file, source) in sources {
        // A message file that does not parse, or that defines a message
        // another file has, is a defect the tests catch.
        let resource = FluentResource::try_new((*source).to_string())
            .unwrap_or_else(|(_, errors)| panic!("locales/{lang}/{file}: {errors:?}"));
        bundle
            .add_resource(resource)
            .unwrap_or_else(|errors| panic!("locales/{lang}/{file}: {errors:?}"));
    }
    bundle
}

fn of(lang: Lang) -> &'static Bundle {
    match lang {
        Lang::Fr => &FR,
        Lang::En => &EN,
    }
}

/// The message `id` in `lang`, with its variables.
pub fn text(lang: Lang, id: &str, args: Option<&FluentArgs<'_>>) -> String {
    let bundle = of(lang);
    let Some(pattern) = bundle.get_message(id).and_then(|m| m.value()) else {
        tracing::error!(
            id,
            lang = lang.code(),
            "a page asks for a message the files lack"
        );
        return id.to_string();
    };
    let mut errors = Vec::new();
    let out = bundle
        .format_pattern(pattern, args, &mut errors)
        .into_owned();
    if !errors.is_empty() {
        tracing::error!(id, ?errors, "a message could not be formatted");
    }
    out
}

/// Whether `lang` has a message `id` (for texts chosen by a code).
pub fn has(lang: Lang, id: &str) -> bool {
    of(lang).has_message(id)
}

/// The ids a message file defines.
pub fn ids(source: &str) -> Vec<String> {
    source
        .lines()
        .filter(|l| !l.starts_with([' ', '#', '\t', '.', '[', '*', '}']) && l.contains(" ="))
        .filter_map(|l| l.split(" =").next())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_message_files_parse_and_define_the_same_messages() {
        let fr: Vec<String> = FR_SOURCES.iter().flat_map(|(_, s)| ids(s)).collect();
        let en: Vec<String> = EN_SOURCES.iter().flat_map(|(_, s)| ids(s)).collect();
        assert!(fr.len() > 100, "{} French messages", fr.len());
        let only_fr: Vec<_> = fr.iter().filter(|i| !en.contains(i)).collect();
        let only_en: Vec<_> = en.iter().filter(|i| !fr.contains(i)).collect();
        assert!(only_fr.is_empty(), "not in English: {only_fr:?}");
        assert!(only_en.is_empty(), "not in French: {only_en:?}");
        for id in &fr {
            assert!(has(Lang::Fr, id) && has(Lang::En, id), "{id}");
        }
    }

    #[test]
    fn variables_are_filled() {
        let mut args = FluentArgs::new();
        args.set("date", "2027-01-31");
        assert!(text(Lang::Fr, "status-covered-until", Some(&args)).contains("2027-01-31"));
        assert!(text(Lang::En, "status-covered-until", Some(&args)).contains("2027-01-31"));
    }
}
