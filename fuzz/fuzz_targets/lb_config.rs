//! The lb's YAML configuration: any text is accepted or refused with a
//! place inside the file (or none) and the file's name; an accepted
//! configuration passes the checks again, and no listener is refused by
//! the parts that read it later (trust list, strategies, headers).
#![no_main]
use libfuzzer_sys::fuzz_target;
use realip_lb::config::{Config, Mode};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::parse("lb.yaml", text) {
        Ok(c) => {
            c.checked().expect("an accepted config re-checks");
            assert!(!c.listeners.is_empty());
            for l in &c.listeners {
                l.trust().expect("checked trust lists parse");
                let _ = l.display_name();
                if let Mode::Http(h) = &l.mode {
                    let _ = h.strategies();
                    let _ = h.header_set();
                    let _ = h.limits();
                }
            }
        }
        Err(e) => {
            assert_eq!(e.file, "lb.yaml");
            // The YAML reader may point just past the last line.
            assert!(
                e.line() <= text.lines().count() + 1,
                "line {} of {text:?}",
                e.line()
            );
            if let Some(at) = e.at {
                assert!(at.line >= 1 && at.column >= 1, "{at:?} of {text:?}");
            }
            assert!(!e.offence.to_string().is_empty());
        }
    }
});
