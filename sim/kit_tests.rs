//! Tests of the test kit itself (`tests/kit/`), which the simulations and the black-box tests
//! share. They run here, once, rather than in every test target that includes the kit.

use online_backup::graph::{NodeRef, Op, Properties, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::kit::http::{exchange, parse_answer, transaction_json, Answer};

fn answer(status: u16, headers: &[(&str, &str)], body: &[u8]) -> Answer {
    Answer {
        status,
        headers: headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect(),
        body: body.to_vec(),
    }
}

#[test]
fn parses_sized_chunked_and_unsized_answers() {
    let sized = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\ncontent-length: 11\r\ndate: Mon, 01 Jan 2024 00:00:00 GMT\r\n\r\n{\"tx_id\":3}";
    let a = parse_answer(sized).unwrap();
    assert_eq!(
        a,
        answer(
            200,
            &[
                ("content-type", "application/json"),
                ("content-length", "11"),
                ("date", "Mon, 01 Jan 2024 00:00:00 GMT")
            ],
            b"{\"tx_id\":3}"
        )
    );
    assert_eq!(a.header("Date"), Some("Mon, 01 Jan 2024 00:00:00 GMT"));
    assert_eq!(a.json().unwrap()["tx_id"], 3);
    let chunked =
        b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{\"a\"\r\n3;x=y\r\n:1}\r\n0\r\n\r\n";
    let a = parse_answer(chunked).unwrap();
    assert_eq!((a.status, a.text().as_str()), (404, "{\"a\":1}"));
    let to_the_end = b"HTTP/1.1 400 Bad Request\r\n\r\nto the end";
    assert_eq!(parse_answer(to_the_end).unwrap().text(), "to the end");
}

#[test]
fn refuses_a_cut_answer() {
    for cut in [
        &b"HTTP/1.1 200 OK\r\ncontent-length: 20\r\n\r\n{}"[..],
        b"HTTP/1.1 200 OK\r\n",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nab",
        b"HTTP/1.1 2xx OK\r\n\r\n",
    ] {
        assert!(
            parse_answer(cut).is_err(),
            "{:?}",
            String::from_utf8_lossy(cut)
        );
    }
}

/// A server that reads the request's head only, answers 413 and closes: the client's write of
/// the body fails, and the answer still counts (HTTP-7's 413 for a body too large).
#[test]
fn reads_an_answer_sent_before_the_whole_body() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (mut client, mut server) = tokio::io::duplex(1024);
        let serve = async move {
            let mut head = Vec::new();
            while !head.ends_with(b"\r\n\r\n") {
                head.push(server.read_u8().await.unwrap());
            }
            server
                .write_all(b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 2\r\n\r\n{}")
                .await
                .unwrap();
            head
        };
        let body = vec![b'x'; 64 << 10];
        let (got, head) = tokio::join!(
            exchange(
                &mut client,
                "db:7474",
                "POST",
                "/db/data/transaction",
                &body
            ),
            serve
        );
        let head = String::from_utf8(head).unwrap();
        assert!(
            head.starts_with("POST /db/data/transaction HTTP/1.1\r\nHost: db:7474\r\n"),
            "{head}"
        );
        assert!(head.contains("\r\nContent-Length: 65536\r\n"), "{head}");
        assert_eq!(got.unwrap(), answer(413, &[("content-length", "2")], b"{}"));
    });
}

#[test]
fn ops_round_trip_through_the_servers_parser() {
    let ops = vec![
        Op::CreateNode {
            labels: vec!["Person".into()],
            props: [
                ("age".to_string(), Value::Int(-3)),
                ("score".to_string(), Value::Float(-12.25)),
                (
                    "tags".to_string(),
                    Value::List(vec![
                        Value::Null,
                        Value::Bool(true),
                        Value::String("x".into()),
                    ]),
                ),
            ]
            .into_iter()
            .collect(),
        },
        Op::CreateRelationship {
            from: NodeRef::CreatedBy(0),
            to: NodeRef::Id(4),
            rel_type: "KNOWS".into(),
            props: Properties::new(),
        },
        Op::SetProperty {
            node: NodeRef::Id(2),
            key: "name".into(),
            value: Value::String("n\"q".into()),
        },
        Op::DeleteRelationship(7),
        Op::DeleteNode(9),
    ];
    let text = transaction_json(&ops).to_string();
    let parsed = online_backup::server::http::parse_transaction(text.as_bytes()).unwrap();
    assert_eq!(
        parsed, ops,
        "HTTP-2, HTTP-3: what the kit sends is what the server reads"
    );
}

/// The model keeps its digest op by op (applied, refused and taken back, probed with
/// `digest_after`); it must always equal the digest computed afresh from its nodes and
/// relationships.
#[test]
fn the_models_running_digest_is_its_digest_from_scratch() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut graph = crate::kit::model::Graph::default();
    let mut refused = 0;
    for i in 0..400 {
        let mut ops = graph.random_tx(&mut rng);
        let probed = graph.digest_after(&ops).unwrap();
        if rng.random_bool(0.2) {
            // Spoil it at the end: every op before the bad one is applied, then taken back.
            ops.push(Op::DeleteNode(u64::MAX));
            assert!(graph.apply(&ops).is_err());
            refused += 1;
        } else {
            graph.apply(&ops).unwrap();
            assert_eq!(graph.digest(), probed, "tx {i}: digest_after differs");
        }
        assert_eq!(
            graph.digest(),
            graph.digest_from_scratch(),
            "tx {i}: the running digest drifted"
        );
    }
    assert!(refused > 10 && !graph.nodes.is_empty());
}
