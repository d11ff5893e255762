//! The plain form: a sync task, the function kept, the intent struct usable,
//! the task registered under the function's name.
#![deny(warnings)]

use airlock::Task;

#[derive(Debug)]
pub struct MailError;

impl std::fmt::Display for MailError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("mail server down")
    }
}

impl std::error::Error for MailError {}

/// Emails the customer that the order went through.
#[airlock::task]
fn send_confirmation_email(order_id: u64, to: String) -> Result<(), MailError> {
    let _ = order_id;
    if to.is_empty() {
        Err(MailError)
    } else {
        Ok(())
    }
}

fn main() {
    // The function stays callable as before.
    assert!(send_confirmation_email(7, "a@b.c".into()).is_ok());

    // The intent struct: fields are the arguments; Clone, Debug.
    let intent = SendConfirmationEmail {
        order_id: 7,
        to: "a@b.c".into(),
    };
    let copy = intent.clone();
    assert_eq!(
        format!("{copy:?}"),
        r#"SendConfirmationEmail { order_id: 7, to: "a@b.c" }"#
    );
    assert_eq!(SendConfirmationEmail::NAME, "send_confirmation_email");
    assert!(!SendConfirmationEmail::IS_ASYNC);
    assert_eq!(
        SendConfirmationEmail::default_options(),
        airlock::DispatchOptions::new()
    );

    // Running it calls the function; an `Err` becomes the task's error.
    assert!(intent.run().wait().is_ok());
    let failing = SendConfirmationEmail {
        order_id: 8,
        to: String::new(),
    };
    assert_eq!(
        failing.run().wait().unwrap_err().to_string(),
        "mail server down"
    );

    // Buffered, inspectable by type.
    let ((), intents) = airlock::capture(|| {
        airlock::enqueue(SendConfirmationEmail {
            order_id: 9,
            to: "x@y.z".into(),
        })
        .unwrap();
    });
    assert_eq!(
        intents[0]
            .payload::<SendConfirmationEmail>()
            .unwrap()
            .order_id,
        9
    );
    assert_eq!(intents[0].to_json().unwrap()["to"], "x@y.z");

    // Registered: a worker holding the name and JSON can run it.
    let registration = airlock::registry::lookup("send_confirmation_email").unwrap();
    assert_eq!(
        registration.rust_path(),
        concat!(module_path!(), "::send_confirmation_email")
    );
    assert!(registration.file().ends_with("basic.rs"));
    assert_eq!(registration.line(), 20);
    airlock::registry::run_json("send_confirmation_email", r#"{"order_id":1,"to":"a@b.c"}"#)
        .unwrap();
    airlock::registry::validate().unwrap();
}
