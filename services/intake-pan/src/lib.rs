//! The kiosk and desk channel (PAN): the prefectures' and sub-prefectures'
//! sites with their opening hours and desks; appointments booked, moved and
//! cancelled online, by a call-centre agent on the phone or at the front
//! desk, with places kept for the alternatives offered to blocked-user
//! reports; and assisted filing at the desk, the person present.
#![forbid(unsafe_code)]

pub mod desks;
pub mod server;

pub use guichet_kit::service::Running;
pub use server::start;
