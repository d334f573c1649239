// `sqlx::migrate!` embeds the migration files at compile time; without this,
// an incremental build would not see a migration added since the last one.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
