//! Tests of the JSON `data` decoder: flat and nested forms agree, shapes and depth are checked, integers are range-checked.

use super::*;

fn fp32(raw: &str, shape: &[usize]) -> Result<Vec<f32>, DataError> {
    let n = shape.iter().product();
    match decode(raw, DataType::Fp32, shape, n)? {
        TensorData::Fp32(v) => Ok(v),
        other => panic!("wrong variant {other:?}"),
    }
}

#[test]
fn flat_and_nested_data_agree() {
    assert_eq!(fp32("[1,2,3,4,5,6]", &[2, 3]).unwrap(), vec![1., 2., 3., 4., 5., 6.]);
    assert_eq!(fp32("[[1,2,3],[4,5,6]]", &[2, 3]).unwrap(), vec![1., 2., 3., 4., 5., 6.]);
    assert_eq!(fp32("[[[1],[2]]]", &[1, 2, 1]).unwrap(), vec![1., 2.]);
    assert_eq!(fp32("[7]", &[]).unwrap(), vec![7.]);
    assert_eq!(fp32("[]", &[0, 4]).unwrap(), Vec::<f32>::new());
}

#[test]
fn nesting_that_does_not_match_the_shape_is_refused() {
    for (raw, shape) in [
        ("[[1,2],[3,4],[5,6]]", &[2, 3][..]),
        ("[[1,2,3],4,5,6]", &[2, 3]),
        ("[1,2,3,[4,5,6]]", &[2, 3]),
        ("[[[1,2,3]],[[4,5,6]]]", &[2, 3]),
        ("[[1,2,3],[4,5]]", &[2, 3]),
        ("[1,2,3,4,5]", &[2, 3]),
        ("[1,2,3,4,5,6,7]", &[2, 3]),
        ("[[1,2,3,4,5,6]]", &[6]),
        ("1", &[1]),
        ("[{}]", &[1]),
        ("[null]", &[1]),
    ] {
        assert!(fp32(raw, shape).is_err(), "{raw} as {shape:?} was accepted");
    }
}

#[test]
fn hostile_depth_is_refused_without_recursion() {
    let raw = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let err = fp32(&raw, &[1, 1]).unwrap_err().to_string();
    assert!(err.contains("nesting"), "{err}");
}

#[test]
fn integers_are_range_checked_never_wrapped() {
    let i8s = |raw: &str| decode(raw, DataType::Int8, &[2], 2);
    assert_eq!(i8s("[-128,127]").unwrap(), TensorData::Int8(vec![-128, 127]));
    assert!(i8s("[128,0]").unwrap_err().to_string().contains("out of range for INT8"));
    assert!(i8s("[1.5,0]").unwrap_err().to_string().contains("not an integer"));
    let u64s = |raw: &str| decode(raw, DataType::Uint64, &[1], 1);
    assert_eq!(u64s("[18446744073709551615]").unwrap(), TensorData::Uint64(vec![u64::MAX]));
    assert!(u64s("[18446744073709551616]").is_err());
    assert!(u64s("[-1]").unwrap_err().to_string().contains("out of range"));
    assert!(decode("[true]", DataType::Int32, &[1], 1).is_err());
}

#[test]
fn other_datatypes_decode() {
    assert_eq!(decode("[true,false]", DataType::Bool, &[2], 2).unwrap(), TensorData::Bool(vec![true, false]));
    assert!(decode("[1]", DataType::Bool, &[1], 1).is_err());
    assert_eq!(
        decode(r#"["a","é\n"]"#, DataType::Bytes, &[2], 2).unwrap(),
        TensorData::Bytes(vec!["a".into(), "é\n".into()])
    );
    assert_eq!(decode("[1.5]", DataType::Fp16, &[1], 1).unwrap(), TensorData::Fp16(vec![f16::from_f32(1.5)]));
    assert!(decode("[70000]", DataType::Fp16, &[1], 1).unwrap_err().to_string().contains("out of range for FP16"));
    assert!(decode("[1e300]", DataType::Fp32, &[1], 1).unwrap_err().to_string().contains("out of range for FP32"));
    assert_eq!(decode("[1e300]", DataType::Fp64, &[1], 1).unwrap(), TensorData::Fp64(vec![1e300]));
    assert!(decode(r#"["1"]"#, DataType::Fp32, &[1], 1).is_err());
    // Shortest round-trip text comes back as the very same double.
    assert_eq!(
        decode("[0.9577587029597641]", DataType::Fp64, &[1], 1).unwrap(),
        TensorData::Fp64(vec![0.957_758_702_959_764_1])
    );
}

/// The flat scanner and the serde path (taken by nested data) must read every value alike.
#[test]
fn the_flat_scanner_agrees_with_the_serde_path() {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut texts: Vec<String> =
        ["0", "-0", "1e5", "1E-5", "-2.5e+3", "0.1", "3.4028235e38", "1e-45", "123456789012345678901234567890"]
            .iter()
            .map(|s| s.to_string())
            .collect();
    for _ in 0..3000 {
        let bits = next();
        let f = f64::from_bits(bits);
        if f.is_finite() {
            texts.push(format!("{f}"));
            texts.push(format!("{f:e}"));
        }
        let g = f32::from_bits(bits as u32);
        if g.is_finite() {
            texts.push(format!("{}", f64::from(g)));
        }
        texts.push(format!("{}", bits as i64 >> (bits % 60)));
    }
    let n = texts.len();
    let flat = format!("[ {} ]", texts.join(" , "));
    let nested = format!("[[{}]]", texts.join(","));
    for dt in [DataType::Fp64, DataType::Fp16, DataType::Bf16, DataType::Int64] {
        let a = decode(&flat, dt, &[1, n], n);
        let b = decode(&nested, dt, &[1, n], n);
        assert_eq!(a.is_ok(), b.is_ok(), "{dt}");
        if let (Ok(a), Ok(b)) = (a, b) {
            assert_eq!(format!("{a:?}"), format!("{b:?}"), "{dt}");
        }
    }
    // FP32 is read directly (correctly rounded); the values of f32 round-trip either way.
    let f32_texts: Vec<String> = (0..3000)
        .map(|_| f32::from_bits(next() as u32))
        .filter(|g| g.is_finite())
        .map(|g| format!("{}", f64::from(g)))
        .collect();
    let n = f32_texts.len();
    let flat = decode(&format!("[{}]", f32_texts.join(",")), DataType::Fp32, &[n], n).unwrap();
    let nested = decode(&format!("[[{}]]", f32_texts.join(",")), DataType::Fp32, &[1, n], n).unwrap();
    assert_eq!(flat, nested);
    // Integers of every width, in and out of range, give the same answers and errors both ways.
    for raw in ["[127,-128]", "[128,0]", "[1.0,2]", "[-1,0]", "[18446744073709551615,0]", "[9223372036854775808,1]"] {
        for dt in [DataType::Int8, DataType::Uint8, DataType::Uint64, DataType::Int64, DataType::Int32] {
            // Errors name the same value; only the column differs.
            let strip = |r: Result<TensorData, DataError>| {
                r.map_err(|e| e.to_string().split(" at line").next().map(str::to_owned))
            };
            let flat = strip(decode(raw, dt, &[2], 2));
            let nested = strip(decode(&format!("[{raw}]"), dt, &[1, 2], 2));
            assert_eq!(flat, nested, "{raw} as {dt}");
        }
    }
}

/// Found by the round-trip tests: `[-0]` was accepted flat but refused nested (serde_json reads `-0`
/// as a float). Both now refuse it, as they refuse `0.0`.
#[test]
fn negative_zero_is_read_alike_flat_and_nested() {
    for dt in [DataType::Int8, DataType::Uint8, DataType::Int64, DataType::Uint64] {
        let flat = decode("[-0,1]", dt, &[1, 2], 2).unwrap_err().to_string();
        let nested = decode("[[-0,1]]", dt, &[1, 2], 2).unwrap_err().to_string();
        assert!(flat.contains("not an integer"), "{flat}");
        assert_eq!(flat.split(" at line").next(), nested.split(" at line").next());
    }
    assert_eq!(decode("[-0.0]", DataType::Fp32, &[1], 1).unwrap(), TensorData::Fp32(vec![-0.0]));
    assert_eq!(decode("[-0]", DataType::Fp64, &[1], 1).map(|d| format!("{d:?}")).unwrap(), "Fp64([-0.0])");
}

#[test]
fn a_lying_shape_reserves_nothing_large() {
    let err = fp32("[1,2,3]", &[1 << 40]).unwrap_err().to_string();
    assert!(err.contains("3 entries"), "{err}");
}
