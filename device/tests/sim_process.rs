//! The simulator started as a process: a host-side test opens its pty and exchanges
//! frames, then stops it with SIGTERM and restarts it on the same state file.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use thecal_protocol::frame::{decode_body, encode, Feed, FrameDecoder, Header};
use thecal_protocol::message::{Request, Response, Revision};

struct Sim {
    child: Child,
    path: String,
}

impl Sim {
    fn start(args: &[&str]) -> Sim {
        let mut child = Command::new(env!("CARGO_BIN_EXE_thecal-sim"))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start thecal-sim");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let path = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("pty path on stdout");
        Sim {
            child,
            path: path.trim().to_string(),
        }
    }

    fn request(&self, id: u16, request: &Request) -> Response {
        let mut port = serialport::new(&self.path, 115_200)
            .timeout(Duration::from_millis(100))
            .open()
            .expect("open pty");
        let mut buf = [0u8; 2048];
        let n = encode(Header::request(id), request, &mut buf).unwrap();
        port.write_all(&buf[..n]).unwrap();
        let mut decoder: FrameDecoder = FrameDecoder::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut chunk = [0u8; 256];
        while Instant::now() < deadline {
            let got = match port.read(&mut chunk) {
                Ok(got) => got,
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => continue,
                Err(e) => panic!("read: {e}"),
            };
            let mut input = &chunk[..got];
            loop {
                match decoder.feed(input) {
                    Feed::Consumed => break,
                    Feed::Error { remaining, .. } => input = remaining,
                    Feed::Frame { frame, remaining } => {
                        assert_eq!(frame.header, Header::response(id));
                        let response = decode_body(frame.body).unwrap();
                        let _ = remaining;
                        return response;
                    }
                }
            }
        }
        panic!("no answer from the simulator within 10 s");
    }

    fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "simulator did not exit on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn identify_and_status_over_the_pty() {
    let sim = Sim::start(&["--speed", "3600", "--seed", "42"]);
    match sim.request(1, &Request::Identify) {
        Response::Identity(id) => {
            assert_eq!(id.serial.as_str(), "SIM000042");
            assert_eq!(id.schema, thecal_protocol::SCHEMA_HASH);
        }
        other => panic!("{other:?}"),
    }
    match sim.request(2, &Request::Status) {
        Response::Status(s) => assert_eq!(s.revision, Revision(1)),
        other => panic!("{other:?}"),
    }
    assert!(sim.terminate().success());
}

#[test]
fn state_survives_a_restart() {
    let dir = std::env::temp_dir().join(format!("thecal-sim-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let state = dir.join("pump.state");
    let state_arg = state.to_str().unwrap();
    let sim = Sim::start(&["--state", state_arg]);
    let record = match sim.request(1, &Request::ReadPrescription) {
        Response::Prescription(r) => r,
        other => panic!("{other:?}"),
    };
    let write = Request::WritePrescription {
        expected: record.revision,
        prescription: record.prescription.clone().into(),
    };
    assert_eq!(
        sim.request(2, &write),
        Response::PrescriptionWritten {
            revision: Revision(2)
        }
    );
    assert!(sim.terminate().success());
    let sim = Sim::start(&["--state", state_arg]);
    match sim.request(1, &Request::ReadPrescription) {
        Response::Prescription(r) => {
            assert_eq!(r.revision, Revision(2));
            assert_eq!(r.prescription, record.prescription);
        }
        other => panic!("{other:?}"),
    }
    assert!(sim.terminate().success());
    let _ = std::fs::remove_dir_all(&dir);
}
