//! Every string the user sees, in one place, ready for translation.

pub const APP_NAME: &str = "Sotto";
pub const TAGLINE: &str = "End-to-end encrypted chat in any browser. Nothing to install.";
pub const LOGIN_HEADING: &str = "Sign in";
pub const LOGIN_JID: &str = "Chat address";
pub const LOGIN_JID_PLACEHOLDER: &str = "you@example.org";
pub const LOGIN_PASSWORD: &str = "Password";
pub const LOGIN_MODE_LEGEND: &str = "This computer is";
pub const LOGIN_MODE_PERSONAL: &str = "My device";
pub const LOGIN_MODE_PERSONAL_HINT: &str = "Stay signed in; your data is stored encrypted.";
pub const LOGIN_MODE_KIOSK: &str = "A public or shared computer";
pub const LOGIN_MODE_KIOSK_HINT: &str = "Nothing is stored; everything is wiped when you leave.";
pub const LOGIN_SUBMIT: &str = "Sign in";
pub const LOGIN_SERVICE: &str = "Server";
pub const ERROR_JID: &str = "Enter your chat address as name@domain.";
pub const ERROR_PASSWORD: &str = "Enter your password.";
pub const NOT_YET_AVAILABLE: &str =
    "Signing in is not available in this build yet: the messaging core is still being built.";
pub const STATE_OFFLINE: &str = "offline";
pub const VERSION_PREFIX: &str = "Version";
