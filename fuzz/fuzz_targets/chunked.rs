//! The chunked-body tracker: where the body ends, or that it is malformed,
//! does not depend on how the bytes were split into reads; the end is never
//! past the bytes given; a body that ended at n also ends at n when given
//! exactly its n bytes, and not before.
#![no_main]
use libfuzzer_sys::fuzz_target;
use realip_lb::chunked::{Chunked, ChunkedError};

/// What feeding `pieces` in order says: the body's length once it ended,
/// `None` while it needs more, or the error.
fn feed<'a>(pieces: impl IntoIterator<Item = &'a [u8]>) -> Result<Option<usize>, ChunkedError> {
    let mut c = Chunked::default();
    let mut used = 0;
    for p in pieces {
        let n = c.feed(p)?;
        assert!(n <= p.len());
        used += n;
        if c.is_done() {
            return Ok(Some(used));
        }
        // A read the body did not end in belongs to it whole.
        assert_eq!(n, p.len());
    }
    Ok(None)
}

fuzz_target!(|data: &[u8]| {
    // The first byte says how many cut points follow (0-7); each is a gap
    // in bytes from the previous cut.
    let Some((&k, rest)) = data.split_first() else {
        return;
    };
    let k = usize::from(k % 8).min(rest.len());
    let (gaps, body) = rest.split_at(k);
    let mut cuts = vec![0];
    for &g in gaps {
        let at = (cuts[cuts.len() - 1] + usize::from(g)).min(body.len());
        cuts.push(at);
    }
    cuts.push(body.len());
    let pieces = cuts.windows(2).map(|w| &body[w[0]..w[1]]);

    let whole = feed([body]);
    assert_eq!(feed(pieces), whole, "split at {cuts:?}");
    if body.len() <= 1024 {
        assert_eq!(feed(body.chunks(1)), whole, "byte by byte");
    }
    if let Ok(Some(end)) = whole {
        assert!(end > 0 && end <= body.len());
        assert_eq!(feed([&body[..end]]), Ok(Some(end)));
        assert_eq!(feed([&body[..end - 1]]), Ok(None));
    }
});
