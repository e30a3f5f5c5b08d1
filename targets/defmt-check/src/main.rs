//! `accessgate-defmt-check <elf> <frames>`: decodes the defmt frames the QEMU ARM image wrote
//! on semihosting's stdout (built with `--features defmt`), prints them as an operator reads
//! them, and checks that they say what R13 asks for ([`check`]). Exit code 0 when every
//! expectation held, 1 when one did not or the stream did not decode, 2 on usage errors.

mod check;

use std::process::ExitCode;

use check::{Level, Line};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [elf, frames] = args.as_slice() else {
        eprintln!("usage: accessgate-defmt-check <firmware ELF> <defmt frames file>");
        return ExitCode::from(2);
    };
    let read = |path: &str| std::fs::read(path).map_err(|e| format!("reading {path}: {e}"));
    let decoded = read(elf).and_then(|elf| read(frames).and_then(|bytes| decode(&elf, &bytes)));
    let lines = match decoded {
        Ok(lines) => lines,
        Err(e) => {
            eprintln!("FAIL: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("decoded {} frames:", lines.len());
    for line in &lines {
        println!("  {line}");
    }
    let report = check::check(&lines);
    for (what, found) in &report.expectations {
        match found {
            Some(i) => println!("ok    {what}: frame {i}"),
            None => println!("MISSING {what}"),
        }
    }
    for problem in &report.problems {
        println!("FAIL  {problem}");
    }
    if report.passed() {
        println!(
            "PASS: the defmt log carries R13 ({} expectations)",
            report.expectations.len()
        );
        ExitCode::SUCCESS
    } else {
        println!("FAIL: the defmt log lacks what R13 asks for (see above)");
        ExitCode::FAILURE
    }
}

/// Every frame of `bytes`, decoded with the defmt table of `elf`. A frame that does not decode,
/// or bytes left after the last frame (a panic message printed as text, a cut-off run), is an
/// error: the stream must be exactly the device's frames.
fn decode(elf: &[u8], bytes: &[u8]) -> Result<Vec<Line>, String> {
    let table = defmt_decoder::Table::parse(elf)
        .map_err(|e| format!("reading the defmt table: {e}"))?
        .ok_or("the ELF has no defmt table: was it built with `--features defmt`?")?;
    // Module paths come from the debug info; without it the lines still decode.
    let locations = table.get_locations(elf).unwrap_or_default();
    let mut decoder = table.new_stream_decoder();
    decoder.received(bytes);
    let mut lines = Vec::new();
    loop {
        match decoder.decode() {
            Ok(frame) => lines.push(Line {
                level: frame.level().map(|l| Level::parse(l.as_str())),
                module: locations
                    .get(&frame.index())
                    .map_or_else(String::new, |l| l.module.clone()),
                timestamp: frame
                    .display_timestamp()
                    .map_or_else(String::new, |t| t.to_string()),
                text: frame.display_message().to_string(),
            }),
            Err(defmt_decoder::DecodeError::UnexpectedEof) => break,
            Err(defmt_decoder::DecodeError::Malformed) => {
                return Err(format!(
                    "frame {} is malformed (after: {:?})",
                    lines.len(),
                    lines.last().map(|l: &Line| l.text.as_str())
                ))
            }
        }
    }
    // The stream decoder keeps a partial frame back; feeding a frame separator (rzCOBS: 0x00)
    // flushes it, so anything left over shows up as one more, undecodable frame.
    decoder.received(&[0]);
    match decoder.decode() {
        Err(defmt_decoder::DecodeError::UnexpectedEof) => Ok(lines),
        _ => {
            let tail = bytes.rsplit(|b| *b == 0).next().unwrap_or_default();
            Err(format!(
                "bytes after frame {} are not a complete frame: {:?}",
                lines.len(),
                String::from_utf8_lossy(tail)
            ))
        }
    }
}
