//! The vectors: what an attacker sends, where the idea comes from, and what
//! RFC 9110/9112/9113 make of it. Sources are short: `RFC9112 6.3` is a
//! section, `Kettle19` PortSwigger's "HTTP Desync Attacks" (2019),
//! `Kettle21` "HTTP/2: The Sequel is Always Worse" (2021), `smuggler X`
//! defparam/smuggler's mutation X (configs/default.py), `Garden` the HTTP
//! Garden's findings (narfindustries/http-garden), `Miller20` BishopFox's
//! h2c smuggling, `0ang3el` websocket-smuggle, `Davison19` hop-by-hop
//! header abuse.

use super::*;

const HOST: &str = "public.test";

/// A request pipelined after the body: if it is ever served, the body was
/// read two ways (its forged XFF also shows it was not rewritten).
pub fn smug() -> Vec<u8> {
    format!("GET /smuggled HTTP/1.1\r\nHost: {HOST}\r\nX-Forwarded-For: {FORGED}\r\n\r\n")
        .into_bytes()
}

/// A legitimate-looking follow-up request with a forged XFF: served it
/// must be rewritten; after a refusal it must not be served at all.
pub fn after() -> Vec<u8> {
    format!("GET /after HTTP/1.1\r\nHost: {HOST}\r\nX-Forwarded-For: {FORGED}\r\n\r\n").into_bytes()
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// `start` CRLF, each header CRLF, CRLF, body.
pub fn req(start: &str, headers: &[&[u8]], body: &[u8]) -> Vec<u8> {
    let mut out = start.as_bytes().to_vec();
    out.extend_from_slice(b"\r\n");
    for h in headers {
        out.extend_from_slice(h);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

fn one(bytes: Vec<u8>) -> Vec<Client> {
    vec![Client {
        delay_ms: 0,
        steps: vec![Step::Send(bytes)],
        head: false,
    }]
}

struct B {
    v: Vector,
}

fn v(
    name: impl Into<String>,
    source: &'static str,
    class: &'static str,
    bytes: Vec<u8>,
    expect: Expect,
) -> B {
    B {
        v: Vector {
            name: name.into(),
            source,
            class,
            transport: Transport::H1,
            clients: one(bytes),
            script: Script::Ok,
            expect,
            check: None,
        },
    }
}

impl B {
    fn check(mut self, c: impl Fn(&Obs) -> Result<(), String> + Send + Sync + 'static) -> Self {
        self.v.check = Some(Box::new(c));
        self
    }
    fn script(mut self, s: Script) -> Self {
        self.v.script = s;
        self
    }
    fn transport(mut self, t: Transport) -> Self {
        self.v.transport = t;
        self
    }
    fn clients(mut self, c: Vec<Client>) -> Self {
        self.v.clients = c;
        self
    }
}

// ------------------------------------------------------------------ checks

fn host_is(want: &'static str) -> impl Fn(&Obs) -> Result<(), String> + Send + Sync {
    move |o: &Obs| {
        for r in o.reqs() {
            let h = r.head.all("host");
            if h.len() != 1 || h[0] != want.as_bytes() {
                return Err(format!(
                    "backend Host {:?}, wanted {want:?}",
                    h.iter().map(|x| wire::lossy(x)).collect::<Vec<_>>()
                ));
            }
        }
        Ok(())
    }
}

fn at_most_one_cl(o: &Obs) -> Result<(), String> {
    for r in o.reqs() {
        let n = r.head.all("content-length").len();
        if n > 1 {
            return Err(format!("backend saw {n} Content-Length headers"));
        }
    }
    Ok(())
}

fn no_cl_with_te(o: &Obs) -> Result<(), String> {
    for r in o.reqs() {
        if !r.head.all("content-length").is_empty() && !r.head.all("transfer-encoding").is_empty() {
            return Err("backend saw both CL and TE".into());
        }
    }
    Ok(())
}

/// After a message with both CL and TE (or an HTTP/1.0 TE) the connection
/// must close (RFC 9112 6.1 / 6.3).
fn closed_if_forwarded(o: &Obs) -> Result<(), String> {
    no_cl_with_te(o)?;
    if o.nreq() > 0 && !o.clients[0].closed {
        return Err(
            "forwarded, but the client connection was left open (RFC 9112 6.1: MUST close)".into(),
        );
    }
    Ok(())
}

fn xff_is_client(o: &Obs) -> Result<(), String> {
    for r in o.reqs() {
        let x = r.head.all("x-forwarded-for");
        if x.len() != 1 || x[0] != CLIENT.as_bytes() {
            return Err(format!(
                "backend X-Forwarded-For {:?}, wanted [{CLIENT}]",
                x.iter().map(|v| wire::lossy(v)).collect::<Vec<_>>()
            ));
        }
        let ri = r.head.all("x-real-ip");
        if ri.len() != 1 || ri[0] != CLIENT.as_bytes() {
            return Err("backend X-Real-IP is not the client".into());
        }
    }
    Ok(())
}

fn no_forwarding_like_names_with_underscore(o: &Obs) -> Result<(), String> {
    for r in o.reqs() {
        for (n, _) in &r.head.fields {
            let norm = n.to_ascii_lowercase().replace('_', "-");
            if n.contains('_')
                && (forwarding_like(n)
                    || norm == "transfer-encoding"
                    || norm == "content-length"
                    || norm == "host")
            {
                return Err(format!("backend got {n:?} (normalises to {norm})"));
            }
        }
    }
    Ok(())
}

fn no_upgrade(o: &Obs) -> Result<(), String> {
    if o.backend.iter().any(|c| c.tunnel) {
        return Err(
            "a tunnel was opened (the backend answered 101 to an Upgrade it was sent)".into(),
        );
    }
    if o.reqs().any(|r| !r.head.all("upgrade").is_empty()) {
        return Err("the backend was sent an Upgrade header".into());
    }
    Ok(())
}

fn no_tunnel(o: &Obs) -> Result<(), String> {
    if o.tunnel() {
        return Err("bytes went through a tunnel the backend never agreed to".into());
    }
    Ok(())
}

fn tunnel_works(o: &Obs) -> Result<(), String> {
    if !o.tunnel() {
        return Err("the WebSocket upgrade did not become a tunnel".into());
    }
    Ok(())
}

/// Client B (the second) got a clean answer of its own.
fn second_clean(o: &Obs) -> Result<(), String> {
    let b = o.clients.get(1).ok_or("no second client")?;
    match b.resps.iter().find(|r| r.status >= 200) {
        Some(r) if r.complete && r.status == 200 && r.body == b"ok" => Ok(()),
        Some(r) if r.status == 502 => Ok(()),
        r => Err(format!(
            "client B got {:?} (body {:?})",
            r.map(|r| r.status),
            r.map(|r| wire::lossy(&r.body))
        )),
    }
}

// ----------------------------------------------------------------- vectors

pub fn all() -> Vec<Vector> {
    let mut out = Vec::new();
    h1_basics(&mut out);
    h1_forged_names(&mut out);
    h1_te(&mut out);
    h1_cl(&mut out);
    h1_chunked(&mut out);
    h1_fields(&mut out);
    h1_host(&mut out);
    h1_target(&mut out);
    h1_upgrade(&mut out);
    h2(&mut out, Transport::H2c);
    h2(&mut out, Transport::H2Tls);
    response(&mut out);
    out
}

fn get(extra: &[&[u8]]) -> Vec<u8> {
    let host = format!("Host: {HOST}");
    let mut h: Vec<&[u8]> = vec![host.as_bytes()];
    h.extend_from_slice(extra);
    req("GET /x HTTP/1.1", &h, b"")
}

fn post(extra: &[&[u8]], body: &[u8]) -> Vec<u8> {
    let host = format!("Host: {HOST}");
    let mut h: Vec<&[u8]> = vec![host.as_bytes()];
    h.extend_from_slice(extra);
    req("POST /x HTTP/1.1", &h, body)
}

fn h1_basics(out: &mut Vec<Vector>) {
    out.push(
        v(
            "baseline GET (fast path)",
            "RFC9112 3",
            "h1",
            get(&[]),
            Expect::Fwd(1),
        )
        .check(xff_is_client)
        .v,
    );
    out.push(
        v(
            "baseline POST CL (hyper path)",
            "RFC9112 6.2",
            "h1",
            post(&[b"Content-Length: 2"], b"ab"),
            Expect::Fwd(1),
        )
        .check(xff_is_client)
        .v,
    );
    out.push(
        v(
            "baseline POST chunked (hyper path)",
            "RFC9112 7.1",
            "h1",
            post(&[b"Transfer-Encoding: chunked"], b"2\r\nab\r\n0\r\n\r\n"),
            Expect::Fwd(1),
        )
        .check(xff_is_client)
        .v,
    );
    out.push(
        v(
            "pipelined GET GET",
            "RFC9112 9.3.2",
            "h1",
            cat(&[&get(&[]), &after()]),
            Expect::Fwd(2),
        )
        .check(xff_is_client)
        .v,
    );
    out.push(
        v(
            "Expect: 100-continue POST",
            "RFC9110 10.1.1",
            "h1",
            post(&[b"Content-Length: 2", b"Expect: 100-continue"], b"ab"),
            Expect::Fwd(1),
        )
        .check(xff_is_client)
        .v,
    );
    out.push(
        v(
            "Connection: close, X-Forwarded-For (hop-by-hop abuse)",
            "Davison19; RFC9110 7.6.1",
            "h1",
            get(&[b"Connection: close, X-Forwarded-For"]),
            Expect::Fwd(1),
        )
        .check(xff_is_client)
        .v,
    );
    out.push(
        v(
            "Connection: X-Real-IP, keep-alive (hyper path)",
            "Davison19; RFC9110 7.6.1",
            "h1",
            post(
                &[b"Content-Length: 2", b"Connection: X-Real-IP, keep-alive"],
                b"ab",
            ),
            Expect::Fwd(1),
        )
        .check(xff_is_client)
        .v,
    );
    out.push(
        v(
            "CL: 0 repeated on a GET (fast path)",
            "RFC9110 8.6; issue 10",
            "h1",
            get(&[b"Content-Length: 0", b"Content-Length: 0"]),
            Expect::RefuseOrFwd(1),
        )
        .check(at_most_one_cl)
        .v,
    );
    out.push(
        v(
            "empty lines before the request line",
            "RFC9112 2.2",
            "h1",
            cat(&[b"\r\n", &get(&[])]),
            Expect::RefuseOrFwd(1),
        )
        .v,
    );
    out.push(
        v(
            "HTTP/1.0 with TE chunked and CL",
            "RFC9112 6.1",
            "h1",
            cat(&[
                &req(
                    "POST /x HTTP/1.0",
                    &[
                        b"Host: public.test",
                        b"Transfer-Encoding: chunked",
                        b"Content-Length: 5",
                    ],
                    b"0\r\n\r\n",
                ),
                &smug(),
            ]),
            Expect::RefuseOrFwd(1),
        )
        .check(closed_if_forwarded)
        .v,
    );
}

fn h1_forged_names(out: &mut Vec<Vector>) {
    let names = [
        "X-Forwarded-For",
        "x-forwarded-for",
        "X-FORWARDED-FOR",
        "X_Forwarded_For",
        "X-Forwarded_For",
        "x_forwarded_for",
        "X_Real_IP",
        "X-Real_Ip",
        "Forwarded",
        "X_Forwarded_Host",
    ];
    for n in names {
        let value = if n == "Forwarded" {
            format!("for={FORGED}")
        } else {
            FORGED.to_string()
        };
        let h = format!("{n}: {value}");
        out.push(
            v(
                format!("forged {n} (fast path)"),
                "CRAFT; Pingora/Garden _",
                "h1-names",
                get(&[h.as_bytes()]),
                Expect::RefuseOrFwd(1),
            )
            .check(no_forwarding_like_names_with_underscore)
            .v,
        );
        out.push(
            v(
                format!("forged {n} (hyper path)"),
                "CRAFT; Pingora/Garden _",
                "h1-names",
                post(&[h.as_bytes(), b"Content-Length: 2"], b"ab"),
                Expect::RefuseOrFwd(1),
            )
            .check(no_forwarding_like_names_with_underscore)
            .v,
        );
    }
    out.push(
        v(
            "X-Client-IP (not one of ours: passes)",
            "Davison19",
            "h1-names",
            get(&[b"X-Client-IP: 1.2.3.4"]),
            Expect::Any,
        )
        .v,
    );
    out.push(
        v(
            "forged XFF twice",
            "RFC9110 5.3",
            "h1-names",
            get(&[b"X-Forwarded-For: 1.2.3.4", b"X-Forwarded-For: 1.2.3.4"]),
            Expect::Fwd(1),
        )
        .check(xff_is_client)
        .v,
    );
}

/// The CL.TE body: by CL one request; by TE a second one, /smuggled.
fn clte(gadget: &[u8]) -> Vec<u8> {
    let body = cat(&[b"0\r\n\r\n", &smug()]);
    let cl = format!("Content-Length: {}", body.len());
    post(&[gadget, cl.as_bytes()], &body)
}

fn h1_te(out: &mut Vec<Vector>) {
    use Expect::*;
    const R: &[u16] = &[400, 501];
    // (name, gadget, expectation, source)
    let cases: Vec<(&str, Vec<u8>, Expect, &'static str)> = vec![
        (
            "CL.TE plain",
            b"Transfer-Encoding: chunked".to_vec(),
            RefuseOrFwd(1),
            "Kettle19; RFC9112 6.3",
        ),
        (
            "TE chunked, identity",
            b"Transfer-Encoding: chunked, identity".to_vec(),
            Refuse(R),
            "RFC9112 6.3",
        ),
        (
            "TE identity, chunked",
            b"Transfer-Encoding: identity, chunked".to_vec(),
            RefuseOrFwd(1),
            "RFC9112 6.1; smuggler nested",
        ),
        (
            "TE xchunked",
            b"Transfer-Encoding: xchunked".to_vec(),
            Refuse(R),
            "Kettle19; RFC9112 6.1",
        ),
        (
            "TE chunk (lazygrep)",
            b"Transfer-Encoding: chunk".to_vec(),
            Refuse(R),
            "smuggler lazygrep",
        ),
        (
            "TE \"chunked\" quoted",
            b"Transfer-Encoding: \"chunked\"".to_vec(),
            Refuse(R),
            "smuggler quoted",
        ),
        (
            "TE space before colon",
            b"Transfer-Encoding : chunked".to_vec(),
            Refuse(&[400]),
            "smuggler space1; RFC9112 5.1",
        ),
        (
            "TE tab before colon",
            b"Transfer-Encoding\t:\tchunked".to_vec(),
            Refuse(&[400]),
            "smuggler tabprefix2; RFC9112 5.1",
        ),
        (
            "TE tab after colon",
            b"Transfer-Encoding:\tchunked".to_vec(),
            RefuseOrFwd(1),
            "smuggler tabprefix1; RFC9110 5.6.3",
        ),
        (
            "TE VT after colon",
            b"Transfer-Encoding:\x0bchunked".to_vec(),
            Refuse(R),
            "smuggler midspace-0b; RFC9110 5.5",
        ),
        (
            "TE FF after colon",
            b"Transfer-Encoding:\x0cchunked".to_vec(),
            Refuse(R),
            "smuggler midspace-0c",
        ),
        (
            "TE 0x01 after colon",
            b"Transfer-Encoding:\x01chunked".to_vec(),
            Refuse(R),
            "smuggler midspace-01",
        ),
        (
            "TE 0xA0 after colon",
            b"Transfer-Encoding:\xa0chunked".to_vec(),
            Refuse(R),
            "smuggler midspace-a0",
        ),
        (
            "TE 0xFF after colon",
            b"Transfer-Encoding:\xffchunked".to_vec(),
            Refuse(R),
            "smuggler midspace-ff",
        ),
        (
            "TE VT at end",
            b"Transfer-Encoding: chunked\x0b".to_vec(),
            Refuse(R),
            "smuggler endspace-0b",
        ),
        (
            "TE NUL at end",
            b"Transfer-Encoding: chunked\x00".to_vec(),
            Refuse(R),
            "smuggler endspace-00; RFC9110 5.5",
        ),
        (
            "TE bare CR at end",
            b"Transfer-Encoding: chunked\r".to_vec(),
            Refuse(R),
            "smuggler 0dsuffix; RFC9112 2.2",
        ),
        (
            "TE VT before name",
            b"\x0bTransfer-Encoding: chunked".to_vec(),
            Refuse(&[400]),
            "smuggler prespace-0b",
        ),
        (
            "TE 0x7f after name",
            b"Transfer-Encoding\x7f: chunked".to_vec(),
            Refuse(&[400]),
            "smuggler postspace-7f",
        ),
        (
            "TE obs-fold value",
            b"Transfer-Encoding:\r\n chunked".to_vec(),
            RefuseOrFwd(1),
            "smuggler linewrapped1; RFC9112 5.2",
        ),
        (
            "TE name then folded colon",
            b"Transfer-Encoding\r\n : chunked".to_vec(),
            Refuse(&[400]),
            "smuggler gareth1",
        ),
        (
            "TE after a folded line",
            b"X: X\r\n Transfer-Encoding: chunked".to_vec(),
            RefuseOrFwd(1),
            "smuggler nameprefix1; RFC9112 5.2",
        ),
        (
            "TE after bare CR",
            b"X: X\rTransfer-Encoding: chunked".to_vec(),
            RefuseOrFwd(1),
            "smuggler xprespace-0d; RFC9112 2.2",
        ),
        (
            "TE after bare LF",
            b"X: X\nTransfer-Encoding: chunked".to_vec(),
            RefuseOrFwd(1),
            "smuggler x-nout; RFC9112 2.2",
        ),
        (
            "TE twice",
            b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked".to_vec(),
            Refuse(R),
            "Kettle19; RFC9112 7",
        ),
        (
            "TE chunked then x",
            b"Transfer-Encoding: chunked\r\nTransfer-Encoding: x".to_vec(),
            Refuse(R),
            "smuggler revdualchunk",
        ),
        (
            "TE x then chunked",
            b"Transfer-Encoding: x\r\nTransfer-Encoding: chunked".to_vec(),
            Refuse(R),
            "Kettle19 TE.TE",
        ),
        (
            "TE yelling",
            b"TRANSFER-ENCODING: CHUNKED".to_vec(),
            RefuseOrFwd(1),
            "smuggler yelling; RFC9110 5.1",
        ),
        (
            "TE chunked, cow",
            b"Transfer-Encoding: chunked, cow".to_vec(),
            Refuse(R),
            "smuggler commaCow",
        ),
        (
            "Transfer_Encoding underscore",
            b"Transfer_Encoding: chunked".to_vec(),
            RefuseOrFwd(1),
            "smuggler underjoin1",
        ),
        (
            "Transfer Encoding space",
            b"Transfer Encoding: chunked".to_vec(),
            Refuse(&[400]),
            "smuggler spacejoin1",
        ),
        (
            "Content-Encoding: chunked",
            b"Content-Encoding: chunked".to_vec(),
            RefuseOrFwd(1),
            "smuggler contentEnc",
        ),
    ];
    for (name, gadget, expect, source) in cases {
        // Not a Transfer-Encoding to any reader: CL alone frames it.
        let no_te = name.starts_with("Transfer_Encoding") || name.starts_with("Content-Encoding");
        let b = v(name, source, "h1-te", clte(&gadget), expect);
        out.push(if no_te {
            b.check(no_forwarding_like_names_with_underscore).v
        } else {
            b.check(|o| {
                closed_if_forwarded(o)?;
                no_forwarding_like_names_with_underscore(o)
            })
            .v
        });
    }
    // TE.CL: by CL the chunk-size line is the body and /smuggled follows.
    let s = smug();
    let body = cat(&[
        format!("{:x}\r\n", s.len()).as_bytes(),
        &s,
        b"\r\n0\r\n\r\n",
    ]);
    out.push(
        v(
            "TE.CL plain",
            "Kettle19; RFC9112 6.3",
            "h1-te",
            post(
                &[b"Content-Length: 4", b"Transfer-Encoding: chunked"],
                &body,
            ),
            Expect::RefuseOrFwd(1),
        )
        .check(closed_if_forwarded)
        .v,
    );
    out.push(
        v(
            "TE.CL with TE: xchunked",
            "Kettle19",
            "h1-te",
            post(
                &[b"Content-Length: 4", b"Transfer-Encoding: xchunked"],
                &body,
            ),
            Expect::Refuse(&[400, 501]),
        )
        .v,
    );
    out.push(
        v(
            "GET with TE chunked (fast path off)",
            "Kettle19 GET body",
            "h1-te",
            cat(&[&get(&[b"Transfer-Encoding: chunked"]), b"0\r\n\r\n"]),
            Expect::Fwd(1),
        )
        .v,
    );
}

/// A POST with `cl` and the body "ab", then /after pipelined.
fn clreq(cls: &[&[u8]]) -> Vec<u8> {
    cat(&[&post(cls, b"ab"), &after()])
}

fn h1_cl(out: &mut Vec<Vector>) {
    use Expect::*;
    let bad: &[(&str, &[&[u8]], &'static str)] = &[
        ("CL +2", &[b"Content-Length: +2"], "RFC9110 8.6; Garden"),
        ("CL -1", &[b"Content-Length: -1"], "RFC9110 8.6"),
        ("CL 0x2", &[b"Content-Length: 0x2"], "RFC9110 8.6; Garden"),
        ("CL 2,3", &[b"Content-Length: 2,3"], "RFC9110 8.6"),
        (
            "CL 2 and 3 repeated",
            &[b"Content-Length: 2", b"Content-Length: 3"],
            "Kettle19; RFC9112 6.3",
        ),
        (
            "CL huge",
            &[b"Content-Length: 99999999999999999999999"],
            "RFC9110 8.6; hyper advisory",
        ),
        ("CL 2a", &[b"Content-Length: 2a"], "RFC9110 8.6"),
        ("CL empty", &[b"Content-Length:"], "RFC9110 8.6"),
        (
            "CL 2 3 (space inside)",
            &[b"Content-Length: 2 3"],
            "RFC9110 8.6",
        ),
        (
            "CL 1_0 underscore digit",
            &[b"Content-Length: 0_2"],
            "Garden (Rust parse)",
        ),
    ];
    for (name, cls, source) in bad {
        out.push(v(*name, source, "h1-cl", clreq(cls), Refuse(&[400])).v);
    }
    let ok: &[(&str, &[&[u8]], &'static str)] = &[
        ("CL ' 2 ' (OWS)", &[b"Content-Length:  2 "], "RFC9110 5.5"),
        ("CL 2, 2", &[b"Content-Length: 2, 2"], "RFC9110 8.6"),
        (
            "CL 2 repeated",
            &[b"Content-Length: 2", b"Content-Length: 2"],
            "RFC9110 8.6",
        ),
        (
            "CL 002 leading zeros",
            &[b"Content-Length: 002"],
            "RFC9110 8.6",
        ),
    ];
    for (name, cls, source) in ok {
        out.push(
            v(*name, source, "h1-cl", clreq(cls), RefuseOrFwd(2))
                .check(at_most_one_cl)
                .v,
        );
    }
}

fn chunkreq(body: &[u8]) -> Vec<u8> {
    cat(&[&post(&[b"Transfer-Encoding: chunked"], body), &smug()])
}

fn chunkreq_ok(body: &[u8]) -> Vec<u8> {
    cat(&[&post(&[b"Transfer-Encoding: chunked"], body), &after()])
}

fn h1_chunked(out: &mut Vec<Vector>) {
    let bad: &[(&str, &[u8], &'static str)] = &[
        ("chunk size zz", b"zz\r\nab\r\n0\r\n\r\n", "RFC9112 7.1"),
        (
            "chunk size overflow",
            b"10000000000000002\r\nab\r\n0\r\n\r\n",
            "Garden; hyper advisory",
        ),
        (
            "chunk size bare LF",
            b"2\nab\r\n0\r\n\r\n",
            "Garden; RFC9112 7.1",
        ),
        ("chunk data bare LF", b"2\r\nab\n0\r\n\r\n", "Garden"),
        (
            "chunk ext bare LF",
            b"2;x\nab\r\n0\r\n\r\n",
            "Garden; Puma advisory",
        ),
        ("chunk ext NUL", b"2;x\x00\r\nab\r\n0\r\n\r\n", "Garden"),
        ("chunk ext bare CR", b"2;x\ry\r\nab\r\n0\r\n\r\n", "Garden"),
        ("chunk longer than size", b"2\r\nabc\r\n0\r\n\r\n", "Garden"),
        ("chunk size 0x2", b"0x2\r\nab\r\n0\r\n\r\n", "Garden"),
        ("chunk size -2", b"-2\r\nab\r\n0\r\n\r\n", "Garden"),
        ("chunk size +2", b"+2\r\nab\r\n0\r\n\r\n", "Garden"),
        (
            "chunk size leading space",
            b" 2\r\nab\r\n0\r\n\r\n",
            "Garden",
        ),
        ("last chunk bare LF", b"2\r\nab\r\n0\n\r\n", "Garden"),
        (
            "trailer bare LF",
            b"2\r\nab\r\n0\r\nX: y\n\r\n",
            "Garden; issue 10",
        ),
        (
            "trailer obs-fold",
            b"2\r\nab\r\n0\r\nX: y\r\n z\r\n\r\n",
            "RFC9112 5.2",
        ),
        (
            "trailer without colon",
            b"2\r\nab\r\n0\r\nxyz\r\n\r\n",
            "RFC9112 7.1.2",
        ),
    ];
    for (name, body, source) in bad {
        out.push(
            v(
                *name,
                source,
                "h1-chunked",
                chunkreq(body),
                Expect::Refuse(&[400]),
            )
            .v,
        );
    }
    out.push(
        v(
            "chunk ext valid",
            "RFC9112 7.1.1",
            "h1-chunked",
            chunkreq_ok(b"2;a=b;c=\"d\"\r\nab\r\n0\r\n\r\n"),
            Expect::RefuseOrFwd(2),
        )
        .check(xff_is_client)
        .v,
    );
    out.push(
        v(
            "trailer valid",
            "RFC9112 7.1.2",
            "h1-chunked",
            chunkreq_ok(b"2\r\nab\r\n0\r\nX-T: y\r\n\r\n"),
            Expect::RefuseOrFwd(2),
        )
        .check(xff_is_client)
        .v,
    );
}

fn h1_fields(out: &mut Vec<Vector>) {
    let bad: &[(&str, &[u8], &'static str)] = &[
        ("NUL in a value", b"X-A: a\x00b", "RFC9110 5.5"),
        ("bare CR in a value", b"X-A: a\rb", "RFC9112 2.2"),
        ("space before colon", b"X-A : b", "RFC9112 5.1"),
        (
            "XFF space before colon",
            b"X-Forwarded-For : 1.2.3.4",
            "RFC9112 5.1",
        ),
        ("tab before colon", b"X-A\t: b", "RFC9112 5.1"),
        ("line without colon", b"garbage", "RFC9112 5"),
        ("empty name", b": b", "RFC9110 5.1"),
        ("name with slash", b"X/A: b", "RFC9110 5.1"),
        ("name with 0x80", b"X\x80A: b", "RFC9110 5.1"),
        ("DEL in a value", b"X-A: a\x7fb", "RFC9110 5.5"),
    ];
    for (name, line, source) in bad {
        // Fast path (GET) and hyper path (POST with a body), each with a
        // forged request pipelined after: it must not be served after 400.
        out.push(
            v(
                format!("{name} (fast path)"),
                source,
                "h1-fields",
                cat(&[&get(&[line]), &after()]),
                Expect::Refuse(&[400]),
            )
            .v,
        );
        out.push(
            v(
                format!("{name} (hyper path)"),
                source,
                "h1-fields",
                cat(&[&post(&[line, b"Content-Length: 2"], b"ab"), &after()]),
                Expect::Refuse(&[400]),
            )
            .v,
        );
    }
    out.push(
        v(
            "obs-fold in a value",
            "RFC9112 5.2",
            "h1-fields",
            get(&[b"X-A: a\r\n b"]),
            Expect::RefuseOrFwd(1),
        )
        .v,
    );
    out.push(
        v(
            "bare LF line ends",
            "RFC9112 2.2",
            "h1-fields",
            b"GET /x HTTP/1.1\nHost: public.test\n\n".to_vec(),
            Expect::RefuseOrFwd(1),
        )
        .v,
    );
}

fn h1_host(out: &mut Vec<Vector>) {
    use Expect::*;
    for (path, mk) in [("fast", false), ("hyper", true)] {
        let send = |start: &str, hs: &[&[u8]]| -> Vec<u8> {
            let mut hs = hs.to_vec();
            if mk {
                hs.push(b"Content-Length: 2");
            }
            cat(&[&req(start, &hs, if mk { b"ab" } else { b"" }), &after()])
        };
        out.push(
            v(
                format!("absolute-form vs Host ({path})"),
                "RFC9112 3.2.2",
                "h1-host",
                req(
                    "GET http://public.test/x HTTP/1.1",
                    &[b"Host: admin.internal"],
                    b"",
                ),
                Fwd(1),
            )
            .check(host_is("public.test"))
            .v,
        );
        out.push(
            v(
                format!("missing Host ({path})"),
                "RFC9112 3.2",
                "h1-host",
                send("GET /x HTTP/1.1", &[]),
                Refuse(&[400]),
            )
            .v,
        );
        out.push(
            v(
                format!("Host: a, b ({path})"),
                "RFC9112 3.2",
                "h1-host",
                send("GET /x HTTP/1.1", &[b"Host: a.test, b.test"]),
                Refuse(&[400]),
            )
            .v,
        );
        out.push(
            v(
                format!("two Host ({path})"),
                "RFC9112 3.2; Kettle19",
                "h1-host",
                send(
                    "GET /x HTTP/1.1",
                    &[b"Host: public.test", b"Host: admin.internal"],
                ),
                Refuse(&[400]),
            )
            .v,
        );
        out.push(
            v(
                format!("Host with @ ({path})"),
                "RFC9110 7.2; RFC3986 3.2",
                "h1-host",
                send("GET /x HTTP/1.1", &[b"Host: public.test@admin.internal"]),
                Refuse(&[400]),
            )
            .v,
        );
        out.push(
            v(
                format!("Host with path ({path})"),
                "RFC9110 7.2",
                "h1-host",
                send("GET /x HTTP/1.1", &[b"Host: public.test/admin"]),
                Refuse(&[400]),
            )
            .v,
        );
    }
    out.push(
        v(
            "absolute-form https vs Host",
            "RFC9112 3.2.2",
            "h1-host",
            req(
                "GET https://public.test/x HTTP/1.1",
                &[b"Host: admin.internal"],
                b"",
            ),
            RefuseOrFwd(1),
        )
        .check(host_is("public.test"))
        .v,
    );
    out.push(
        v(
            "absolute-form vs Host (body)",
            "RFC9112 3.2.2",
            "h1-host",
            req(
                "POST http://public.test/x HTTP/1.1",
                &[b"Host: admin.internal", b"Content-Length: 2"],
                b"ab",
            ),
            Fwd(1),
        )
        .check(host_is("public.test"))
        .v,
    );
    out.push(
        v(
            "HTTP/1.0 without Host",
            "RFC9112 3.2",
            "h1-host",
            req("GET /x HTTP/1.0", &[], b""),
            RefuseOrFwd(1),
        )
        .v,
    );
    out.push(
        v(
            "empty Host",
            "RFC9112 3.2",
            "h1-host",
            req("GET /x HTTP/1.1", &[b"Host:"], b""),
            RefuseOrFwd(1),
        )
        .v,
    );
    out.push(
        v(
            "Host port twice",
            "RFC9110 7.2",
            "h1-host",
            req("GET /x HTTP/1.1", &[b"Host: public.test:80:80"], b""),
            Refuse(&[400]),
        )
        .v,
    );
}

fn h1_target(out: &mut Vec<Vector>) {
    use Expect::*;
    let h: &[&[u8]] = &[b"Host: public.test"];
    let cases: Vec<(&str, Vec<u8>, Expect, &'static str)> = vec![
        (
            "GET  / (two spaces)",
            req("GET  /x HTTP/1.1", h, b""),
            RefuseOrFwd(1),
            "RFC9112 3",
        ),
        (
            "GET / HTTP/1.1 x",
            cat(&[&req("GET /x HTTP/1.1 x", h, b""), &after()]),
            Refuse(&[400]),
            "RFC9112 3",
        ),
        ("HTTP/0.9", b"GET /x\r\n".to_vec(), Any, "RFC9112 C.1"),
        (
            "HTTP/1.2",
            req("GET /x HTTP/1.2", h, b""),
            RefuseOrFwd(1),
            "RFC9110 2.5",
        ),
        (
            "HTTP/2.0 on h1",
            req("GET /x HTTP/2.0", h, b""),
            Refuse(&[400, 505]),
            "RFC9110 2.5",
        ),
        (
            "HTTP/3.0 on h1",
            req("GET /x HTTP/3.0", h, b""),
            Refuse(&[400, 505]),
            "RFC9110 2.5",
        ),
        (
            "lowercase http/1.1",
            req("GET /x http/1.1", h, b""),
            Refuse(&[400, 505]),
            "RFC9112 2.3",
        ),
        (
            "CONNECT",
            cat(&[&req("CONNECT public.test:443 HTTP/1.1", h, b""), &after()]),
            RefuseOrFwd(1),
            "RFC9110 9.3.6",
        ),
        (
            "OPTIONS *",
            req("OPTIONS * HTTP/1.1", h, b""),
            Any,
            "RFC9112 3.2.4",
        ),
        (
            "GET * ",
            req("GET * HTTP/1.1", h, b""),
            Refuse(&[400]),
            "RFC9112 3.2.4",
        ),
        (
            "fragment in target",
            req("GET /x#frag HTTP/1.1", h, b""),
            RefuseOrFwd(1),
            "RFC9112 3.2",
        ),
        (
            "target without slash",
            req("GET x HTTP/1.1", h, b""),
            Refuse(&[400]),
            "RFC9112 3.2",
        ),
        (
            "authority-form on GET",
            req("GET public.test:80 HTTP/1.1", h, b""),
            Refuse(&[400]),
            "RFC9112 3.2.3",
        ),
        (
            "NUL in target",
            req("GET /x\x00y HTTP/1.1", h, b""),
            Refuse(&[400]),
            "RFC9112 3",
        ),
        (
            "tab separators",
            req("GET\t/x\tHTTP/1.1", h, b""),
            RefuseOrFwd(1),
            "RFC9112 3",
        ),
    ];
    for (name, bytes, expect, source) in cases {
        out.push(
            v(name, source, "h1-target", bytes, expect)
                .check(no_tunnel)
                .v,
        );
    }
}

fn h1_upgrade(out: &mut Vec<Vector>) {
    let forged_next = || {
        Step::Send(
            format!("GET /next HTTP/1.1\r\nHost: {HOST}\r\nX-Forwarded-For: {FORGED}\r\n\r\n")
                .into_bytes(),
        )
    };
    let up = |hs: &[&[u8]]| Client {
        delay_ms: 0,
        steps: vec![Step::Send(get(hs)), Step::Await, forged_next()],
        head: false,
    };
    out.push(
        v(
            "Upgrade: h2c to a 101-happy backend",
            "Miller20; RFC9113 3.1",
            "h1-upgrade",
            vec![],
            Expect::Any,
        )
        .clients(vec![up(&[
            b"Connection: Upgrade, HTTP2-Settings",
            b"Upgrade: h2c",
            b"HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA",
        ])])
        .script(Script::Upgrade101)
        .check(no_upgrade)
        .v,
    );
    out.push(
        v(
            "Upgrade: foo to a 101-happy backend",
            "RFC9110 7.8",
            "h1-upgrade",
            vec![],
            Expect::Any,
        )
        .clients(vec![up(&[b"Connection: Upgrade", b"Upgrade: foo"])])
        .script(Script::Upgrade101)
        .check(no_upgrade)
        .v,
    );
    out.push(
        v(
            "Upgrade: websocket, backend says 200",
            "0ang3el; RFC9110 7.8",
            "h1-upgrade",
            vec![],
            Expect::Any,
        )
        .clients(vec![up(&[
            b"Connection: Upgrade",
            b"Upgrade: websocket",
            b"Sec-WebSocket-Version: 13",
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        ])])
        .script(Script::NoUpgrade)
        .check(no_tunnel)
        .v,
    );
    out.push(
        v(
            "Upgrade: websocket without Connection: upgrade",
            "RFC9110 7.8",
            "h1-upgrade",
            vec![],
            Expect::Any,
        )
        .clients(vec![up(&[b"Upgrade: websocket"])])
        .script(Script::Upgrade101)
        .check(no_tunnel)
        .v,
    );
    let ws = Client {
        delay_ms: 0,
        steps: vec![
            Step::Send(get(&[
                b"Connection: Upgrade",
                b"Upgrade: websocket",
                b"Sec-WebSocket-Version: 13",
                b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
            ])),
            Step::Await,
            Step::Send(b"\x81\x05hello".to_vec()),
        ],
        head: false,
    };
    out.push(
        v(
            "Upgrade: websocket (the one that tunnels)",
            "RFC6455 4; RFC9110 7.8",
            "h1-upgrade",
            vec![],
            Expect::Any,
        )
        .clients(vec![ws])
        .check(tunnel_works)
        .v,
    );
    out.push(
        v(
            "Upgrade: h2c on a POST",
            "Miller20",
            "h1-upgrade",
            vec![],
            Expect::Any,
        )
        .clients(vec![Client {
            delay_ms: 0,
            steps: vec![
                Step::Send(post(
                    &[
                        b"Connection: Upgrade, HTTP2-Settings",
                        b"Upgrade: h2c",
                        b"HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA",
                        b"Content-Length: 2",
                    ],
                    b"ab",
                )),
                Step::Await,
                forged_next(),
            ],
            head: false,
        }])
        .script(Script::Upgrade101)
        .check(no_upgrade)
        .v,
    );
}

// ------------------------------------------------------------------- h2

type F<'a> = Vec<(&'a [u8], &'a [u8])>;

fn base<'a>() -> F<'a> {
    vec![
        (b":method", b"GET"),
        (b":scheme", b"https"),
        (b":path", b"/x"),
        (b":authority", b"public.test"),
    ]
}

fn h2(out: &mut Vec<Vector>, t: Transport) {
    use Expect::*;
    let tag = if t == Transport::H2c { "h2c" } else { "h2" };
    let class = if t == Transport::H2c { "h2c" } else { "h2-tls" };
    let smug = smug();
    let with = |extra: &[(&'static [u8], &'static [u8])]| {
        let mut f = base();
        f.extend_from_slice(extra);
        f
    };
    let post_f = |extra: &[(&'static [u8], &'static [u8])]| {
        let mut f: F = vec![
            (b":method", b"POST"),
            (b":scheme", b"https"),
            (b":path", b"/x"),
            (b":authority", b"public.test"),
        ];
        f.extend_from_slice(extra);
        f
    };
    let r = |f: F, body: Option<&[u8]>| wire::h2_request(&f, body);
    let cases: Vec<(&str, Vec<u8>, Expect, &'static str)> = vec![
        ("baseline GET", r(base(), None), Fwd(1), "RFC9113 8.3"),
        (
            "baseline POST",
            r(post_f(&[(b"content-length", b"2")]), Some(b"ab")),
            Fwd(1),
            "RFC9113 8.1",
        ),
        (
            "H2.CL 0 with a smuggled body",
            r(post_f(&[(b"content-length", b"0")]), Some(&smug)),
            RefuseOrFwd(1),
            "Kettle21 H2.CL; RFC9113 8.1.1",
        ),
        (
            "H2.CL larger than DATA",
            r(post_f(&[(b"content-length", b"100")]), Some(b"ab")),
            Refuse(&[]),
            "RFC9113 8.1.1",
        ),
        (
            "H2.CL +2",
            r(post_f(&[(b"content-length", b"+2")]), Some(b"ab")),
            Refuse(&[]),
            "RFC9110 8.6; Garden",
        ),
        (
            "H2.TE chunked",
            r(
                post_f(&[(b"transfer-encoding", b"chunked")]),
                Some(&cat(&[b"0\r\n\r\n", &smug])),
            ),
            Refuse(&[]),
            "Kettle21 H2.TE; RFC9113 8.2.2",
        ),
        (
            "connection: keep-alive",
            r(with(&[(b"connection", b"keep-alive")]), None),
            Refuse(&[]),
            "RFC9113 8.2.2",
        ),
        (
            "keep-alive header",
            r(with(&[(b"keep-alive", b"timeout=5")]), None),
            Refuse(&[]),
            "RFC9113 8.2.2",
        ),
        (
            "proxy-connection header",
            r(with(&[(b"proxy-connection", b"keep-alive")]), None),
            Refuse(&[]),
            "RFC9113 8.2.2",
        ),
        (
            "upgrade header",
            r(with(&[(b"upgrade", b"h2c")]), None),
            Refuse(&[]),
            "RFC9113 8.2.2; Kettle21",
        ),
        (
            "te: gzip",
            r(with(&[(b"te", b"gzip")]), None),
            Refuse(&[]),
            "RFC9113 8.2.2",
        ),
        (
            "te: trailers",
            r(with(&[(b"te", b"trailers")]), None),
            Fwd(1),
            "RFC9113 8.2.2",
        ),
        (
            "uppercase name",
            r(with(&[(b"X-Forwarded-For", b"1.2.3.4")]), None),
            Refuse(&[]),
            "RFC9113 8.2.1",
        ),
        (
            "uppercase Host",
            r(with(&[(b"Host", b"admin.internal")]), None),
            Refuse(&[]),
            "RFC9113 8.2.1",
        ),
        (
            "CRLF in a value",
            r(with(&[(b"x-a", b"b\r\nX-Forwarded-For: 1.2.3.4")]), None),
            Refuse(&[]),
            "Kettle21 H2.X; RFC9113 8.2.1",
        ),
        (
            "LF in a value",
            r(with(&[(b"x-a", b"b\nTransfer-Encoding: chunked")]), None),
            Refuse(&[]),
            "Kettle21; RFC9113 8.2.1",
        ),
        (
            "NUL in a value",
            r(with(&[(b"x-a", b"b\x00c")]), None),
            Refuse(&[]),
            "RFC9113 8.2.1",
        ),
        (
            "leading space in a value",
            r(with(&[(b"x-a", b" b")]), None),
            RefuseOrFwd(1),
            "RFC9113 8.2.1",
        ),
        (
            "colon in a name",
            r(with(&[(b"x:a", b"b")]), None),
            Refuse(&[]),
            "RFC9113 8.2.1; Kettle21",
        ),
        (
            "space in a name",
            r(with(&[(b"x a", b"b")]), None),
            Refuse(&[]),
            "RFC9113 8.2.1",
        ),
        (
            "CRLF in :path",
            r(
                vec![
                    (b":method", b"GET"),
                    (b":scheme", b"https"),
                    (
                        b":path",
                        b"/x HTTP/1.1\r\nX-Forwarded-For: 1.2.3.4\r\n\r\nGET /smuggled",
                    ),
                    (b":authority", b"public.test"),
                ],
                None,
            ),
            Refuse(&[]),
            "Kettle21 request line injection",
        ),
        (
            "space in :path",
            r(
                vec![
                    (b":method", b"GET"),
                    (b":scheme", b"https"),
                    (b":path", b"/x HTTP/1.1"),
                    (b":authority", b"public.test"),
                ],
                None,
            ),
            Refuse(&[]),
            "Kettle21; RFC9113 8.3.1",
        ),
        (
            "CRLF in :method",
            r(
                vec![
                    (
                        b":method",
                        b"GET /smuggled HTTP/1.1\r\nX-Forwarded-For: 1.2.3.4\r\nX: y",
                    ),
                    (b":scheme", b"https"),
                    (b":path", b"/x"),
                    (b":authority", b"public.test"),
                ],
                None,
            ),
            Refuse(&[]),
            "Kettle21",
        ),
        (
            "CRLF in :authority",
            r(
                vec![
                    (b":method", b"GET"),
                    (b":scheme", b"https"),
                    (b":path", b"/x"),
                    (b":authority", b"public.test\r\nX-Forwarded-For: 1.2.3.4"),
                ],
                None,
            ),
            Refuse(&[]),
            "Kettle21",
        ),
        (
            ":authority vs host",
            r(with(&[(b"host", b"admin.internal")]), None),
            RefuseOrFwd(1),
            "RFC9113 8.3.1",
        ),
        (
            "host only (no :authority)",
            r(
                vec![
                    (b":method", b"GET"),
                    (b":scheme", b"https"),
                    (b":path", b"/x"),
                    (b"host", b"public.test"),
                ],
                None,
            ),
            Fwd(1),
            "RFC9113 8.3.1",
        ),
        (
            "pseudo after regular",
            r(
                vec![
                    (b":method", b"GET"),
                    (b":scheme", b"https"),
                    (b"x-a", b"b"),
                    (b":path", b"/x"),
                    (b":authority", b"public.test"),
                ],
                None,
            ),
            Refuse(&[]),
            "RFC9113 8.3",
        ),
        (
            "duplicate :path",
            r(with(&[(b":path", b"/admin")]), None),
            Refuse(&[]),
            "RFC9113 8.3.1",
        ),
        (
            "duplicate :authority",
            r(with(&[(b":authority", b"admin.internal")]), None),
            Refuse(&[]),
            "RFC9113 8.3.1",
        ),
        (
            "missing :path",
            r(
                vec![
                    (b":method", b"GET"),
                    (b":scheme", b"https"),
                    (b":authority", b"public.test"),
                ],
                None,
            ),
            Refuse(&[]),
            "RFC9113 8.3.1",
        ),
        (
            "missing :method",
            r(
                vec![
                    (b":scheme", b"https"),
                    (b":path", b"/x"),
                    (b":authority", b"public.test"),
                ],
                None,
            ),
            Refuse(&[]),
            "RFC9113 8.3.1",
        ),
        (
            "empty :path",
            r(
                vec![
                    (b":method", b"GET"),
                    (b":scheme", b"https"),
                    (b":path", b""),
                    (b":authority", b"public.test"),
                ],
                None,
            ),
            Refuse(&[]),
            "RFC9113 8.3.1",
        ),
        (
            "unknown pseudo :foo",
            r(with(&[(b":foo", b"bar")]), None),
            Refuse(&[]),
            "RFC9113 8.3",
        ),
        (
            ":status in a request",
            r(with(&[(b":status", b"200")]), None),
            Refuse(&[]),
            "RFC9113 8.3",
        ),
        (
            "x_forwarded_for",
            r(with(&[(b"x_forwarded_for", b"1.2.3.4")]), None),
            RefuseOrFwd(1),
            "CRAFT; Garden",
        ),
        (
            "x-forwarded-for",
            r(with(&[(b"x-forwarded-for", b"1.2.3.4")]), None),
            Fwd(1),
            "RFC7239 8",
        ),
        (
            "x_real_ip",
            r(with(&[(b"x_real_ip", b"1.2.3.4")]), None),
            RefuseOrFwd(1),
            "CRAFT",
        ),
        (
            "forwarded",
            r(with(&[(b"forwarded", b"for=1.2.3.4")]), None),
            Fwd(1),
            "RFC7239 8",
        ),
    ];
    for (name, bytes, expect, source) in cases {
        let b = v(format!("{tag} {name}"), source, class, bytes, expect).transport(t);
        let b = if name.contains(":authority vs host") || name.contains("host only") {
            b.check(host_is("public.test"))
        } else if name.starts_with("x-forwarded-for") || name == "baseline GET" {
            b.check(xff_is_client)
        } else {
            b.check(no_forwarding_like_names_with_underscore)
        };
        out.push(b.v);
    }
    // CONTINUATION carrying the forged header.
    let block = wire::hpack(&with(&[(b"x-forwarded-for", b"1.2.3.4")]));
    let (a, b) = block.split_at(block.len() / 2);
    let mut bytes = wire::PREFACE.to_vec();
    bytes.extend(wire::frame(wire::SETTINGS, 0, 0, &[]));
    bytes.extend(wire::frame(wire::HEADERS, wire::END_STREAM, 1, a));
    bytes.extend(wire::frame(wire::CONTINUATION, wire::END_HEADERS, 1, b));
    out.push(
        v(
            format!("{tag} CONTINUATION split XFF"),
            "RFC9113 6.10",
            class,
            bytes,
            Fwd(1),
        )
        .transport(t)
        .check(xff_is_client)
        .v,
    );
    // HEADERS on an even stream id.
    let mut bytes = wire::PREFACE.to_vec();
    bytes.extend(wire::frame(wire::SETTINGS, 0, 0, &[]));
    bytes.extend(wire::frame(
        wire::HEADERS,
        wire::END_STREAM | wire::END_HEADERS,
        2,
        &wire::hpack(&base()),
    ));
    out.push(
        v(
            format!("{tag} even stream id"),
            "RFC9113 5.1.1",
            class,
            bytes,
            Any,
        )
        .transport(t)
        .check(|o| {
            if o.nreq() > 0 {
                Err("served a request on an even stream".into())
            } else {
                Ok(())
            }
        })
        .v,
    );
}

// -------------------------------------------------------------- responses

fn resp_vec(
    name: String,
    source: &'static str,
    first: &[u8],
    close: bool,
    expect: Expect,
    hyper: bool,
    head: bool,
) -> Vector {
    let bytes = if head {
        req("HEAD /x HTTP/1.1", &[b"Host: public.test"], b"")
    } else if hyper {
        post(&[b"Content-Length: 2"], b"ab")
    } else {
        get(&[])
    };
    let mut c = one(bytes.clone());
    c[0].head = head;
    // Client B comes after, on its own connection: it must get its own
    // clean answer, never what was left over on a pooled connection.
    c.push(Client {
        delay_ms: 50,
        steps: vec![Step::Send(get(&[]))],
        head: false,
    });
    let mut b = v(name, source, "response", vec![], expect)
        .clients(c)
        .script(Script::Raw {
            first: first.to_vec(),
            rest: OK.to_vec(),
            later: None,
            close,
        });
    let _ = bytes;
    b = b.check(second_clean);
    b.v
}

fn response(out: &mut Vec<Vector>) {
    use Expect::*;
    let poison = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{POISON}",
        POISON.len()
    );
    let p = poison.as_bytes();
    let cases: Vec<(&str, Vec<u8>, bool, Expect, &'static str)> = vec![
        ("CL and TE", cat(&[b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", p]), false, RespOkOr502(200), "RFC9112 6.3; Kettle19"),
        ("CL +2", b"HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\nok".to_vec(), false, Bad502, "RFC9112 6.3; Garden"),
        ("CL 2 and 3", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok!".to_vec(), false, Bad502, "RFC9112 6.3"),
        ("CL 2, 2", b"HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\nok".to_vec(), false, RespOkOr502(200), "RFC9110 8.6"),
        ("CL 2 repeated", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok".to_vec(), false, RespOkOr502(200), "RFC9110 8.6"),
        ("CL -1", b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\nok".to_vec(), false, Bad502, "RFC9112 6.3"),
        ("CL 0x2", b"HTTP/1.1 200 OK\r\nContent-Length: 0x2\r\n\r\nok".to_vec(), false, Bad502, "RFC9112 6.3"),
        ("chunk line bare LF", cat(&[b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\nok\r\n0\r\n\r\n", p]), false, BadOrCut, "Garden"),
        ("trailer bare LF", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nX: y\n\r\n".to_vec(), false, BadOrCut, "Garden; issue 10"),
        ("chunk size overflow", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000002\r\nok\r\n0\r\n\r\n".to_vec(), false, BadOrCut, "Garden"),
        ("obs-fold header", b"HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 2\r\n\r\nok".to_vec(), false, RespOkOr502(200), "RFC9112 5.2"),
        ("space before colon", b"HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\nok".to_vec(), false, RespOkOr502(200), "RFC9112 5.1"),
        ("NUL in a header", b"HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 2\r\n\r\nok".to_vec(), false, RespOkOr502(200), "RFC9110 5.5"),
        ("bare CR splitting", b"HTTP/1.1 200 OK\r\nX-A: a\rContent-Length: 0\r\nContent-Length: 2\r\n\r\nok".to_vec(), false, RespOkOr502(200), "RFC9112 2.2"),
        ("status 2000", b"HTTP/1.1 2000 OK\r\nContent-Length: 2\r\n\r\nok".to_vec(), false, Bad502, "RFC9112 4"),
        ("status abc", b"HTTP/1.1 abc OK\r\nContent-Length: 2\r\n\r\nok".to_vec(), false, Bad502, "RFC9112 4"),
        ("status 099", b"HTTP/1.1 099 Low\r\nContent-Length: 2\r\n\r\nok".to_vec(), false, Bad502, "RFC9110 15"),
        ("ICY status line", b"ICY 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec(), false, Bad502, "RFC9112 4"),
        ("HTTP/2.0 status line", b"HTTP/2.0 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec(), false, Bad502, "RFC9112 2.3"),
        ("body on 204", cat(&[b"HTTP/1.1 204 No Content\r\nContent-Length: 27\r\n\r\n", p]), false, RespOk(204), "RFC9110 15.3.5; Kettle21"),
        ("body on 304", cat(&[b"HTTP/1.1 304 Not Modified\r\nContent-Length: 27\r\n\r\n", p]), false, RespOk(304), "RFC9110 15.4.5"),
        ("100 then 200", b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec(), false, RespOk(200), "RFC9110 15.2"),
        ("103 then 200", b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec(), false, RespOk(200), "RFC8297"),
        ("unsolicited 101", b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec(), false, Bad502, "RFC9110 15.2.2"),
        ("extra bytes after (same write)", cat(&[OK, p]), false, RespOk(200), "Kettle21 queue poisoning; issue 10"),
        ("cut short CL", b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc".to_vec(), true, BadOrCut, "RFC9112 8"),
        ("cut short chunked", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab".to_vec(), true, BadOrCut, "RFC9112 8"),
        ("close-delimited", b"HTTP/1.1 200 OK\r\n\r\nok".to_vec(), true, RespOk(200), "RFC9112 6.3"),
        ("TE gzip (close-delimited)", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nok".to_vec(), true, RespOkOr502(200), "RFC9112 6.3"),
        ("TE twice", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n".to_vec(), false, RespOkOr502(200), "RFC9112 7"),
        ("TE xchunked with CL", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: xchunked\r\nContent-Length: 2\r\n\r\nok".to_vec(), false, Any, "Kettle19"),
        ("HTTP/1.0 with TE chunked", b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n".to_vec(), true, Any, "RFC9112 6.1"),
    ];
    for (name, first, close, expect, source) in &cases {
        for hyper in [false, true] {
            let path = if hyper { "hyper" } else { "fast" };
            out.push(resp_vec(
                format!("resp {name} ({path})"),
                source,
                first,
                *close,
                *expect,
                hyper,
                false,
            ));
        }
    }
    out.push(resp_vec(
        "resp body on HEAD (fast)".into(),
        "RFC9110 9.3.2; Kettle21",
        &cat(&[
            format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", p.len()).as_bytes(),
            p,
        ]),
        false,
        RespOk(200),
        false,
        true,
    ));
    // Response queue poisoning: unsolicited bytes after a complete
    // response, in the same write or 50 ms later; client B comes at once
    // (before a 500 ms idle check) or after 700 ms idle.
    // Client A says Connection: close (or not), so that its backend
    // connection goes back to the pool at once and B may be given it.
    for (late, delay, a_closes) in [
        (false, 50u64, true),
        (false, 700, true),
        (true, 80, true),
        (true, 700, true),
        (false, 50, false),
        (true, 80, false),
    ] {
        let name = format!(
            "poison: extra response {}, B after {delay} ms{}",
            if late {
                "50 ms later"
            } else {
                "in the same write"
            },
            if a_closes { ", A closes" } else { ", A stays" }
        );
        let a_req = if a_closes {
            get(&[b"Connection: close"])
        } else {
            get(&[])
        };
        let (first, later) = if late {
            (OK.to_vec(), Some(p.to_vec()))
        } else {
            (cat(&[OK, p]), None)
        };
        out.push(
            v(
                name,
                "Kettle21 queue poisoning; issue 10",
                "response",
                vec![],
                RespOk(200),
            )
            .clients(vec![
                Client {
                    delay_ms: 0,
                    steps: vec![Step::Send(a_req)],
                    head: false,
                },
                Client {
                    delay_ms: delay,
                    steps: vec![Step::Send(get(&[]))],
                    head: false,
                },
            ])
            .script(Script::Raw {
                first,
                rest: OK.to_vec(),
                later,
                close: false,
            })
            .check(second_clean)
            .v,
        );
    }
}
