//! `srsnet run --publish` against a real broker: Debian's mosquitto, started by each test on a
//! free loopback port (`.ci/run` installs it and runs these with `--features mqtt`).
#![cfg(feature = "mqtt")]

use rumqttc::{Client, Event, MqttOptions, Packet, QoS};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

const TOPIC: &str = "srsnet/test";

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("srsnet-mqtt-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A mosquitto on a loopback port. Persistence keeps the test subscriber's session (and the
/// messages queued for it) across a restart, as a production broker would.
struct Broker {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl Broker {
    fn start(name: &str) -> Self {
        let dir = tmp(name);
        let port = free_port();
        let conf = dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location {}/\nuser root\n",
                dir.display()
            ),
        )
        .unwrap();
        let mut b = Self { port, dir, child: None };
        b.restart();
        b
    }

    fn restart(&mut self) {
        let bin = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("mosquitto is not installed (apt-get install mosquitto; .ci/run does)");
        let child = Command::new(bin)
            .arg("-c")
            .arg(self.dir.join("mosquitto.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let t0 = Instant::now();
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(t0.elapsed() < Duration::from_secs(10), "mosquitto did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A clean shutdown (SIGTERM: mosquitto saves its sessions).
    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            c.wait().unwrap();
        }
    }

    fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}/{TOPIC}", self.port)
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A QoS 1 subscriber with a persistent session; each received payload comes through the channel.
fn subscribe(port: u16) -> Receiver<serde_json::Value> {
    let mut opts = MqttOptions::new(format!("test-sub-{port}"), "127.0.0.1", port);
    opts.set_clean_session(false)
        .set_keep_alive(Duration::from_secs(5))
        .set_max_packet_size(16 << 20, 16 << 20);
    let (client, mut connection) = Client::new(opts, 16);
    let (tx, rx) = channel();
    let (sub_tx, sub_rx) = channel();
    std::thread::spawn(move || {
        let mut subscribed = false;
        for ev in connection.iter() {
            match ev {
                Ok(Event::Incoming(Packet::ConnAck(_))) if !subscribed => {
                    client.subscribe(TOPIC, QoS::AtLeastOnce).unwrap();
                }
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    subscribed = true;
                    let _ = sub_tx.send(());
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    if tx.send(serde_json::from_slice(&p.payload).unwrap()).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    });
    sub_rx.recv_timeout(Duration::from_secs(10)).expect("subscription");
    rx
}

/// `srsnet run` on the synthetic source with `extra` arguments, started in the background.
fn srsnet_run(extra: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_srsnet"))
        .args(["run", "--source", "synthetic", "--size", "64x64", "--model", "tophat"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn finished(child: Child) -> (Output, String) {
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, err)
}

/// The frame indices received, without QoS 1 duplicates, until `n` distinct ones or a timeout.
fn frames(rx: &Receiver<serde_json::Value>, n: usize) -> (Vec<u64>, Vec<serde_json::Value>) {
    let (mut seen, mut msgs) = (Vec::new(), Vec::new());
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(m) = rx.recv_timeout(left) else { break };
        let f = m["frame"].as_u64().unwrap();
        if !seen.contains(&f) {
            seen.push(f);
            msgs.push(m);
        }
    }
    (seen, msgs)
}

fn stats(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn every_frame_arrives_in_order_with_its_record() {
    let broker = Broker::start("order");
    let rx = subscribe(broker.port);
    let dir = tmp("order-out");
    let (jsonl, stats_path) = (dir.join("run.jsonl"), dir.join("stats.json"));
    let run = srsnet_run(&[
        "--count",
        "40",
        "--publish",
        &broker.url(),
        "--camera-id",
        "cam-a",
        "--jsonl",
        jsonl.to_str().unwrap(),
        "--stats-json",
        stats_path.to_str().unwrap(),
    ]);
    let (out, err) = finished(run);
    assert!(out.status.success(), "{err}");
    let (seen, msgs) = frames(&rx, 40);
    assert_eq!(seen, (0..40).collect::<Vec<_>>());
    let records: Vec<serde_json::Value> = std::fs::read_to_string(&jsonl)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    for (m, r) in msgs.iter().zip(&records) {
        assert_eq!(m["camera_id"], "cam-a");
        // The message is the JSON Lines record plus the camera id.
        let mut m = m.clone();
        m.as_object_mut().unwrap().remove("camera_id");
        assert_eq!(&m, r);
        let captured = r["captured_unix_s"].as_f64().unwrap();
        assert!(
            captured <= now && now - captured < 120.0,
            "capture time {captured}, now {now}"
        );
        assert!(r["latency_ms"].as_f64().unwrap() > 0.0);
    }
    // The synthetic scene has two targets per frame: the messages carry detections.
    assert!(msgs.iter().any(|m| !m["targets"].as_array().unwrap().is_empty()));
    let p = &stats(&stats_path)["publish"];
    assert_eq!((p["published"].as_u64(), p["delivered"].as_u64()), (Some(40), Some(40)));
    assert_eq!(p["overflowed"], 0);
}

#[test]
fn a_broker_restart_within_the_buffer_loses_nothing() {
    let mut broker = Broker::start("restart");
    let rx = subscribe(broker.port);
    let dir = tmp("restart-out");
    let stats_path = dir.join("stats.json");
    let run = srsnet_run(&[
        "--count",
        "80",
        "--fps",
        "20",
        "--publish",
        &broker.url(),
        "--jsonl",
        "/dev/null",
        "--stats-json",
        stats_path.to_str().unwrap(),
    ]);
    let (before, _) = frames(&rx, 15);
    assert_eq!(before, (0..15).collect::<Vec<_>>());
    broker.stop();
    std::thread::sleep(Duration::from_millis(1000));
    broker.restart();
    let (out, err) = finished(run);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("connection lost"), "{err}");
    let (after, _) = frames(&rx, 65);
    let mut all = before;
    all.extend(after);
    assert_eq!(all, (0..80).collect::<Vec<_>>(), "every frame, in order");
    let p = &stats(&stats_path)["publish"];
    assert_eq!(p["delivered"], 80);
    assert!(p["disconnections"].as_u64().unwrap() >= 1);
}

#[test]
fn a_broker_that_never_returns_is_an_error_with_counts() {
    let mut broker = Broker::start("gone");
    let rx = subscribe(broker.port);
    let dir = tmp("gone-out");
    let stats_path = dir.join("stats.json");
    let run = srsnet_run(&[
        "--count",
        "60",
        "--fps",
        "20",
        "--publish",
        &broker.url(),
        "--publish-buffer",
        "10",
        "--jsonl",
        "/dev/null",
        "--stats-json",
        stats_path.to_str().unwrap(),
    ]);
    let (first, _) = frames(&rx, 10);
    assert_eq!(first.len(), 10);
    broker.stop();
    let t0 = Instant::now();
    let (out, err) = finished(run);
    assert!(!out.status.success());
    assert!(
        t0.elapsed() < Duration::from_secs(20),
        "the run must end, not wait for the broker"
    );
    let broker_name = format!("MQTT broker 127.0.0.1:{}", broker.port);
    assert!(
        err.contains(&broker_name) && err.contains("were not delivered"),
        "{err}"
    );
    assert!(err.contains("dropped when the 10-message buffer was full"), "{err}");
    let p = &stats(&stats_path)["publish"];
    let n = |k: &str| p[k].as_u64().unwrap();
    assert_eq!(n("published"), 60, "every frame was still processed");
    assert!(
        n("overflowed") > 0 && n("delivered") >= 10 && n("delivered") < 60,
        "{p}"
    );
}

#[test]
fn a_refused_connection_fails_the_run_at_once() {
    let port = free_port();
    let t0 = Instant::now();
    let run = srsnet_run(&[
        "--publish",
        &format!("mqtt://127.0.0.1:{port}/{TOPIC}"),
        "--jsonl",
        "/dev/null",
    ]);
    let (out, err) = finished(run);
    assert!(!out.status.success());
    assert!(
        err.contains(&format!("cannot connect to the MQTT broker 127.0.0.1:{port}")),
        "{err}"
    );
    assert!(t0.elapsed() < Duration::from_secs(20));
}
