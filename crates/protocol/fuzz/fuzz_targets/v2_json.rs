//! Fuzzes a JSON inference request body (no binary data) against fixed model signatures covering every
//! V2 datatype, scalar, fixed and dynamic (-1) dimensions, required and optional inputs. Every answer is
//! checked (`check`), every accepted request must re-encode (JSON and binary) to the same tensors, and
//! small decode limits may only add refusals (`check_limits`).
//! The input is the body as a client would POST it.

#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard_protocol_fuzz::{check_limits, check_reencodes, decode_checked, models};

fuzz_target!(|body: &[u8]| {
    for model in models() {
        let plain = decode_checked(body, None, model);
        check_limits(body, None, model, plain.as_ref());
        // A client may send Inference-Header-Content-Length for an all-JSON body: same answer (for an
        // empty body that length is 0, which marks a raw binary request instead).
        if !body.is_empty() {
            let with_len = decode_checked(body, Some(body.len()), model);
            assert_eq!(plain, with_len, "a header length equal to the body changed the answer");
        }
        if let Some(r) = plain {
            check_reencodes(&r, model);
        }
    }
});
