//! Fuzzes the binary tensor data extension: a JSON header followed by binary data, split where
//! `Inference-Header-Content-Length` says, including raw single-input bodies (length 0) and lengths that
//! point past the body or into the middle of the JSON. Every answer is checked (`check`), every accepted
//! request must re-encode (JSON and binary) to the same tensors, and small decode limits may only add
//! refusals (`check_limits`).
//!
//! Input layout, so that seeds stay readable: the header's value as the client sent it, a newline, then
//! the body. The value is parsed as the server parses the header (trimmed decimal; anything else is a
//! 400 before decoding, so such inputs are skipped). An input without a newline is a body sent without
//! the header.

#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard_protocol_fuzz::{check_limits, check_reencodes, decode_checked, models};

fuzz_target!(|input: &[u8]| {
    let (header_len, body) = match input.iter().position(|&b| b == b'\n') {
        None => (None, input),
        Some(i) => {
            let value = std::str::from_utf8(&input[..i]).ok().and_then(|s| s.trim().parse::<usize>().ok());
            let Some(n) = value else { return };
            (Some(n), &input[i + 1..])
        }
    };
    for model in models() {
        let got = decode_checked(body, header_len, model);
        check_limits(body, header_len, model, got.as_ref());
        if let Some(r) = got {
            check_reencodes(&r, model);
        }
    }
});
