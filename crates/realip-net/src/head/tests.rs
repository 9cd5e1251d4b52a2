use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant as StdInstant};

use bytes::Buf;
use tokio::io::{AsyncWriteExt, ReadBuf};

use super::*;

const HEAD: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
const NEXT: &[u8] = b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n";
const LONG: Duration = Duration::from_secs(3600);
/// The deadline where a correct reader needs none: a wrong one fails the
/// test instead of hanging it.
const SOON: Duration = Duration::from_secs(5);

/// The end of a head at its first CRLFCRLF: the tests' stand-in for a
/// caller's httparse call.
fn end(b: &[u8]) -> Option<usize> {
    b.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

/// What a [`Script`] does once its chunks are out.
#[derive(Clone, Copy)]
enum Then {
    /// Nothing, ever (the deadline or the bound has to end the read).
    Silent,
    Eof,
    Fail,
}

/// A stream that gives out its chunks one per read, exactly as cut.
struct Script {
    chunks: VecDeque<Vec<u8>>,
    then: Then,
    /// Reads that returned bytes.
    reads: usize,
}

impl Script {
    fn new<C: AsRef<[u8]>>(chunks: impl IntoIterator<Item = C>, then: Then) -> Self {
        Script {
            chunks: chunks.into_iter().map(|c| c.as_ref().to_vec()).collect(),
            then,
            reads: 0,
        }
    }

    fn bytes(all: &[u8], then: Then) -> Self {
        Script::new(all.chunks(1), then)
    }
}

impl AsyncRead for Script {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let Some(mut chunk) = self.chunks.pop_front() else {
            return match self.then {
                // No waker kept: the reader's timer wakes the task.
                Then::Silent => Poll::Pending,
                Then::Eof => Poll::Ready(Ok(())),
                Then::Fail => Poll::Ready(Err(io::ErrorKind::ConnectionReset.into())),
            };
        };
        let n = chunk.len().min(buf.remaining());
        buf.put_slice(&chunk[..n]);
        if n < chunk.len() {
            self.chunks.push_front(chunk.split_off(n));
        }
        self.reads += 1;
        Poll::Ready(Ok(()))
    }
}

/// One `read_head` with the CRLFCRLF parse and no shutdown signal; also
/// the buffer lengths the parse was called with.
async fn read<I: AsyncRead + Unpin>(
    io: &mut I,
    buf: &mut BytesMut,
    limits: HeadLimits,
) -> (Result<Option<usize>, HeadError>, Vec<usize>) {
    // Already due: a reader that does not set it as the deadline says
    // fails at once rather than hanging.
    let timer = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(timer);
    let mut seen = Vec::new();
    let r = read_head(io, buf, &limits, timer.as_mut(), None, |b| {
        seen.push(b.len());
        end(b)
    })
    .await;
    (r, seen)
}

fn whole(d: Duration) -> HeadLimits {
    HeadLimits::new(1024, Deadline::Whole(d))
}

#[tokio::test]
async fn a_head_in_one_read() {
    let mut all = HEAD.to_vec();
    all.extend_from_slice(b"body");
    let mut io = Script::new([&all], Then::Silent);
    let mut buf = BytesMut::with_capacity(4096);
    let (r, seen) = read(&mut io, &mut buf, whole(SOON)).await;
    assert_eq!(r.unwrap(), Some(HEAD.len()));
    assert_eq!(seen, [all.len()], "one parse, of everything read");
    assert_eq!(io.reads, 1);
    // Head and what followed stay; the buffer the caller gave was enough.
    assert_eq!(&buf[..], &all[..]);
    assert_eq!(buf.capacity(), 4096, "no reallocation");
}

#[tokio::test]
async fn a_head_cut_anywhere_or_byte_by_byte() {
    let mut all = HEAD.to_vec();
    all.extend_from_slice(NEXT);
    for cut in 1..all.len() {
        let mut io = Script::new([&all[..cut], &all[cut..]], Then::Silent);
        let mut buf = BytesMut::new();
        let (r, _) = read(&mut io, &mut buf, whole(SOON)).await;
        assert_eq!(r.unwrap(), Some(HEAD.len()), "cut at {cut}");
        // Cut inside the head: both reads; after it: the first holds it.
        assert_eq!(io.reads, if cut < HEAD.len() { 2 } else { 1 });
        assert_eq!(buf.len(), if cut < HEAD.len() { all.len() } else { cut });
    }
    let mut io = Script::bytes(&all, Then::Silent);
    let mut buf = BytesMut::new();
    let (r, seen) = read(&mut io, &mut buf, whole(SOON)).await;
    assert_eq!(r.unwrap(), Some(HEAD.len()));
    // Parsed after every byte, from the buffer's start; no read past the
    // head's last byte.
    assert_eq!(seen, (1..=HEAD.len()).collect::<Vec<_>>());
    assert_eq!(io.reads, HEAD.len());
    assert_eq!(&buf[..], HEAD);
    assert_eq!(io.chunks.len(), NEXT.len());
}

#[tokio::test]
async fn a_head_byte_by_byte_over_loopback() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let client = tokio::spawn(async move {
        let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
        c.set_nodelay(true).unwrap();
        for b in HEAD.iter().chain(b"GET") {
            c.write_all(&[*b]).await.unwrap();
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        c
    });
    let (mut s, _) = listener.accept().await.unwrap();
    let mut buf = BytesMut::new();
    let (r, seen) = read(&mut s, &mut buf, whole(Duration::from_secs(10))).await;
    assert_eq!(r.unwrap(), Some(HEAD.len()));
    assert!(seen.len() > 1, "split over several reads: {seen:?}");
    let mut c = client.await.unwrap();
    // What came after the head stays for the next one; then a clean close.
    buf.advance(HEAD.len());
    c.shutdown().await.unwrap();
    let (r, _) = read(&mut s, &mut buf, whole(Duration::from_secs(10))).await;
    assert!(matches!(r, Err(HeadError::Closed)), "{r:?}");
    assert_eq!(&buf[..], b"GET");
}

#[tokio::test]
async fn too_large_at_the_bound_not_after() {
    let limits = HeadLimits::new(64, Deadline::Whole(LONG));
    let never_ends = [b'a'; 64];
    // Exactly the bound, then silence: refused now, not at the deadline.
    let mut io = Script::new(never_ends.chunks(16), Then::Silent);
    let mut buf = BytesMut::new();
    let r = tokio::time::timeout(Duration::from_secs(5), read(&mut io, &mut buf, limits))
        .await
        .expect("refused without waiting for more")
        .0;
    assert!(matches!(r, Err(HeadError::TooLarge { limit: 64 })), "{r:?}");
    assert_eq!((buf.len(), io.reads), (64, 4));
    // One byte less is still a head that may end.
    let mut io = Script::new(never_ends[..63].chunks(16), Then::Silent);
    let mut buf = BytesMut::new();
    let limits = HeadLimits::new(64, Deadline::Whole(Duration::from_millis(100)));
    let (r, _) = read(&mut io, &mut buf, limits).await;
    assert!(matches!(r, Err(HeadError::TimedOut)), "{r:?}");
    // A head that ends on the bound's last byte is taken, and so is one
    // that ends past it in the read that crossed it (the bound is on what
    // is held while no end is in sight, as before the reader was shared).
    let mut exact = vec![b'a'; 60];
    exact.extend_from_slice(b"\r\n\r\n");
    let mut io = Script::bytes(&exact, Then::Silent);
    let (r, _) = read(&mut io, &mut BytesMut::new(), limits).await;
    assert_eq!(r.unwrap(), Some(64));
    let mut over = vec![b'a'; 90];
    over.extend_from_slice(b"\r\n\r\n");
    let mut io = Script::new([&over], Then::Silent);
    let (r, _) = read(&mut io, &mut BytesMut::with_capacity(128), limits).await;
    assert_eq!(r.unwrap(), Some(94));
}

/// A peer on a duplex stream that sends `bytes` at `at` (after the
/// start), then stays connected and silent.
fn peer_sending(bytes: &'static [u8], at: &[u64]) -> tokio::io::DuplexStream {
    let (mut a, b) = tokio::io::duplex(4096);
    let at = at.to_vec();
    tokio::spawn(async move {
        let start = tokio::time::Instant::now();
        for (i, ms) in at.into_iter().enumerate() {
            tokio::time::sleep_until(start + Duration::from_millis(ms)).await;
            let _ = a.write_all(&bytes[i..=i]).await;
        }
        // Held open until the test is done.
        tokio::time::sleep(LONG).await;
        drop(a);
    });
    b
}

async fn timed(io: &mut tokio::io::DuplexStream, limits: HeadLimits) -> (HeadError, Duration) {
    let t = StdInstant::now();
    let (r, _) = read(io, &mut BytesMut::new(), limits).await;
    (r.expect_err("no head"), t.elapsed())
}

#[tokio::test]
async fn one_deadline_for_the_whole_head() {
    let ms = Duration::from_millis;
    // Nothing at all: idle.
    let mut io = peer_sending(b"", &[]);
    let (e, took) = timed(&mut io, whole(ms(300))).await;
    assert!(matches!(e, HeadError::Idle), "{e:?}");
    assert!(took >= ms(290), "{took:?}");
    // A byte late in the wait does not move the deadline.
    let mut io = peer_sending(b"G", &[300]);
    let (e, took) = timed(&mut io, whole(ms(400))).await;
    assert!(matches!(e, HeadError::TimedOut), "{e:?}");
    assert!(took >= ms(390) && took < ms(650), "{took:?}");
}

#[tokio::test]
async fn the_head_deadline_counts_from_its_first_byte() {
    let ms = Duration::from_millis;
    let limits = HeadLimits::new(
        1024,
        Deadline::IdleThenHead {
            idle: ms(400),
            head: ms(400),
        },
    );
    let mut io = peer_sending(b"", &[]);
    let (e, took) = timed(&mut io, limits).await;
    assert!(matches!(e, HeadError::Idle), "{e:?}");
    assert!(took >= ms(390), "{took:?}");
    // First byte at 300 ms: the head has until 700 ms, however many more
    // bytes come.
    let mut io = peer_sending(b"GE", &[300, 600]);
    let (e, took) = timed(&mut io, limits).await;
    assert!(matches!(e, HeadError::TimedOut), "{e:?}");
    assert!(took >= ms(690) && took < ms(950), "{took:?}");
}

#[tokio::test]
async fn each_read_gets_its_own_time() {
    let ms = Duration::from_millis;
    let trickle = [0, 150, 300, 450, 600, 750, 900];
    let each = HeadLimits::new(1024, Deadline::EachRead(ms(300)));
    let mut io = peer_sending(b"GET / H", &trickle);
    let (e, took) = timed(&mut io, each).await;
    assert!(matches!(e, HeadError::TimedOut), "{e:?}");
    assert!(took >= ms(1150), "kept alive by its reads: {took:?}");
    // The same trickle under one deadline is cut off.
    let mut io = peer_sending(b"GET / H", &trickle);
    let (e, took) = timed(&mut io, whole(ms(300))).await;
    assert!(matches!(e, HeadError::TimedOut), "{e:?}");
    assert!(took < ms(800), "{took:?}");
}

#[tokio::test]
async fn a_set_timer_is_left_as_set() {
    let ms = Duration::from_millis;
    let mut io = peer_sending(b"HTTP/1.1 2", &[0, 100, 200, 300, 400, 500, 600, 700]);
    let timer = tokio::time::sleep(ms(300));
    tokio::pin!(timer);
    let limits = HeadLimits::new(1024, Deadline::Set);
    let t = StdInstant::now();
    let r = read_head(&mut io, &mut BytesMut::new(), &limits, timer, None, end).await;
    assert!(matches!(r, Err(HeadError::TimedOut)), "{r:?}");
    assert!(t.elapsed() < ms(600), "{:?}", t.elapsed());
}

#[tokio::test]
async fn a_close_before_a_head_is_clean_one_inside_it_is_not() {
    let mut io = Script::new::<&[u8]>([], Then::Eof);
    let mut buf = BytesMut::new();
    let (r, _) = read(&mut io, &mut buf, whole(SOON)).await;
    assert!(matches!(r, Ok(None)), "{r:?}");
    let mut io = Script::new([b"GET / HT"], Then::Eof);
    let (r, _) = read(&mut io, &mut buf, whole(SOON)).await;
    assert!(matches!(r, Err(HeadError::Closed)), "{r:?}");
    assert_eq!(&buf[..], b"GET / HT");
    // A failed read keeps what came before it.
    let mut io = Script::new([b"GET"], Then::Fail);
    let mut buf = BytesMut::new();
    let (r, _) = read(&mut io, &mut buf, whole(SOON)).await;
    assert!(matches!(&r, Err(HeadError::Io(e)) if e.kind() == io::ErrorKind::ConnectionReset));
    assert_eq!(&buf[..], b"GET");
    // Over loopback: connect, then close.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let c = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut s, _) = listener.accept().await.unwrap();
    drop(c);
    let (r, _) = read(&mut s, &mut BytesMut::new(), whole(SOON)).await;
    assert!(matches!(r, Ok(None)), "{r:?}");
}

#[tokio::test]
async fn pipelined_heads_are_taken_without_a_read() {
    let mut all = HEAD.to_vec();
    all.extend_from_slice(NEXT);
    all.extend_from_slice(b"GET /third");
    let mut io = Script::new([&all], Then::Silent);
    let mut buf = BytesMut::new();
    let (r, _) = read(&mut io, &mut buf, whole(SOON)).await;
    assert_eq!(r.unwrap(), Some(HEAD.len()));
    buf.advance(HEAD.len());
    let (r, seen) = read(&mut io, &mut buf, whole(SOON)).await;
    assert_eq!(r.unwrap(), Some(NEXT.len()));
    assert_eq!(
        (io.reads, seen.len()),
        (1, 1),
        "parsed from the buffer alone"
    );
    buf.advance(NEXT.len());
    let (r, _) = read(&mut io, &mut buf, whole(Duration::from_millis(50))).await;
    assert!(matches!(r, Err(HeadError::TimedOut)), "{r:?}");
    assert_eq!(&buf[..], b"GET /third");
}

#[tokio::test]
async fn shutdown_ends_the_wait_not_a_buffered_head() {
    let (tx, mut rx) = watch::channel(false);
    let limits = whole(SOON);
    let timer = tokio::time::sleep(LONG);
    tokio::pin!(timer);
    // Signalled while waiting.
    let mut io = Script::new([b"GET"], Then::Silent);
    let signal = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        tx.send(true).unwrap();
        tx
    });
    let mut buf = BytesMut::new();
    let r = read_head(
        &mut io,
        &mut buf,
        &limits,
        timer.as_mut(),
        Some(&mut rx),
        end,
    );
    let r = tokio::time::timeout(Duration::from_secs(5), r)
        .await
        .expect("ended by the signal");
    assert!(matches!(r, Err(HeadError::Shutdown)), "{r:?}");
    let _tx = signal.await.unwrap();
    // Already signalled: a head in the buffer is still taken; nothing more
    // is read.
    let mut io = Script::new([HEAD], Then::Silent);
    buf.clear();
    buf.extend_from_slice(NEXT);
    let r = read_head(
        &mut io,
        &mut buf,
        &limits,
        timer.as_mut(),
        Some(&mut rx),
        end,
    )
    .await;
    assert_eq!(r.unwrap(), Some(NEXT.len()));
    buf.clear();
    let r = read_head(
        &mut io,
        &mut buf,
        &limits,
        timer.as_mut(),
        Some(&mut rx),
        end,
    )
    .await;
    assert!(matches!(r, Err(HeadError::Shutdown)), "{r:?}");
    assert_eq!(io.reads, 0);
}

#[tokio::test]
async fn the_buffer_grows_only_when_short_of_room() {
    // Room enough (512 by default): read into the caller's buffer as is.
    let mut buf = BytesMut::with_capacity(600);
    let mut io = Script::new([HEAD], Then::Silent);
    let (r, _) = read(&mut io, &mut buf, whole(SOON)).await;
    assert_eq!(r.unwrap(), Some(HEAD.len()));
    assert_eq!(buf.capacity(), 600);
    // Less room than asked for: grown by `grow` first.
    let mut buf = BytesMut::with_capacity(600);
    let mut io = Script::new([HEAD], Then::Silent);
    let limits = whole(SOON).growing(1024, 8192);
    let (r, _) = read(&mut io, &mut buf, limits).await;
    assert_eq!(r.unwrap(), Some(HEAD.len()));
    assert!(buf.capacity() >= 8192, "{}", buf.capacity());
    // The default growth stays within a small bound.
    assert_eq!(HeadLimits::new(100, Deadline::Set).grow, 101);
    assert_eq!(HeadLimits::new(1 << 20, Deadline::Set).grow, 4096);
}
