//! Numeric functions: casts, rounding (half to even), aggregation, `$formatNumber` (XPath
//! F&O picture strings) and `$formatBase`.

use super::{Ctx, Imp, arg};
use crate::errors::{Error, Result, err, err_val};
use crate::evaluator::Evaluator;
use crate::functions::string::to_json_string;
use crate::value::{Value, js_number_string};

pub const DEFS: &[(&str, &str, Imp)] = &[
    ("sum", "<a<n>:n>", f_sum),
    ("max", "<a<n>:n>", f_max),
    ("min", "<a<n>:n>", f_min),
    ("average", "<a<n>:n>", f_average),
    ("number", "<(nsb)-:n>", f_number),
    ("floor", "<n-:n>", f_floor),
    ("ceil", "<n-:n>", f_ceil),
    ("round", "<n-n?:n>", f_round),
    ("abs", "<n-:n>", f_abs),
    ("sqrt", "<n-:n>", f_sqrt),
    ("power", "<n-n:n>", f_power),
    ("random", "<:n>", f_random),
    ("formatNumber", "<n-so?:s>", f_format_number),
    ("formatBase", "<n-n?:s>", f_format_base),
];

fn nums(v: &Value) -> Option<Vec<f64>> {
    match v {
        Value::Undefined => None,
        v => Some(v.members().iter().filter_map(|x| x.as_f64()).collect()),
    }
}

fn f_sum(_: &mut Evaluator, args: &[Value], _: &Ctx) -> Result<Value> {
    Ok(match nums(&arg(args, 0)) {
        None => Value::Undefined,
        Some(n) => Value::Number(n.iter().sum()),
    })
}

fn f_max(_: &mut Evaluator, args: &[Value], _: &Ctx) -> Result<Value> {
    Ok(match nums(&arg(args, 0)) {
        Some(n) if !n.is_empty() => {
            Value::Number(n.iter().cloned().fold(f64::NEG_INFINITY, f64::max))
        }
        _ => Value::Undefined,
    })
}

fn f_min(_: &mut Evaluator, args: &[Value], _: &Ctx) -> Result<Value> {
    Ok(match nums(&arg(args, 0)) {
        Some(n) if !n.is_empty() => Value::Number(n.iter().cloned().fold(f64::INFINITY, f64::min)),
        _ => Value::Undefined,
    })
}

fn f_average(_: &mut Evaluator, args: &[Value], _: &Ctx) -> Result<Value> {
    Ok(match nums(&arg(args, 0)) {
        Some(n) if !n.is_empty() => Value::Number(n.iter().sum::<f64>() / n.len() as f64),
        _ => Value::Undefined,
    })
}

fn is_decimal(s: &str) -> bool {
    let s = s.strip_prefix('-').unwrap_or(s);
    let (mant, exp) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let (int, frac) = match mant.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (mant, None),
    };
    let digits = |d: &str| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit());
    digits(int)
        && frac.is_none_or(digits)
        && exp.is_none_or(|e| digits(e.strip_prefix(['+', '-']).unwrap_or(e)))
}

/// `$number` on a string (decimal, or 0x/0o/0b integers).
pub fn parse_number(s: &str) -> Option<f64> {
    if is_decimal(s) {
        return s.parse::<f64>().ok().filter(|n| n.is_finite());
    }
    let radix = |p: &str, r: u32| {
        s.strip_prefix(p)
            .or_else(|| s.strip_prefix(&p.to_uppercase()))
            .filter(|d| !d.is_empty())
            .and_then(|d| u64::from_str_radix(d, r).ok())
            .map(|n| n as f64)
    };
    radix("0x", 16)
        .or_else(|| radix("0o", 8))
        .or_else(|| radix("0b", 2))
}

fn f_number(_: &mut Evaluator, args: &[Value], _: &Ctx) -> Result<Value> {
    Ok(match arg(args, 0) {
        Value::Undefined => Value::Undefined,
        Value::Number(n) => Value::Number(n),
        Value::Bool(b) => Value::Number(if b { 1.0 } else { 0.0 }),
        Value::String(s) => match parse_number(&s) {
            Some(n) => Value::Number(n),
            None => return Err(err_val("D3030", &to_json_string(&Value::String(s), false))),
        },
        v => return Err(err_val("D3030", &to_json_string(&v, false))),
    })
}

fn unary(args: &[Value], f: fn(f64) -> f64) -> Value {
    match arg(args, 0) {
        Value::Number(n) => Value::Number(f(n)),
        _ => Value::Undefined,
    }
}

fn f_floor(_: &mut Evaluator, args: &[Value], _: &Ctx) -> Result<Value> {
    Ok(unary(args, f64::floor))
}
fn f_ceil(_: &mut Evaluator, args: &[Value], _: &Ctx) -> Result<Value> {
    Ok(unary(args, f64::ceil))
}
fn f_abs(_: &mut Evaluator, args: &[Value], _: &Ctx) -> Result<Value> {
    Ok(unary(args, f64::abs))
}

/// Shifts the decimal point by `places` through the decimal string, as the reference
/// implementation does to avoid binary multiplication errors.
fn shift(n: f64, places: i32) -> f64 {
    let s = js_number_string(n);
    let (mant, exp) = match s.split_once('e') {
        Some((m, e)) => (m.to_string(), e.parse::<i32>().unwrap_or(0)),
        None => (s.clone(), 0),
    };
    format!("{mant}e{}", exp + places).parse().unwrap_or(n)
}

/// `$round`: half to even, at `precision` decimal places.
pub fn round(n: f64, precision: i32) -> f64 {
    let x = if precision != 0 {
        shift(n, precision)
    } else {
        n
    };
    let mut r = (x + 0.5).floor();
    let diff = r - x;
    if diff.abs() == 0.5 && (r % 2.0).abs() == 1.0 {
        r -= 1.0;
    }
    if precision != 0 {
        r = shift(r, -precision);
    }
    if r == 0.0 { 0.0 } else { r }
}

fn f_round(_: &mut Evaluator, args: &[Value], _: &Ctx) -> Result<Value> {
    let Value::Number(n) = arg(args, 0) else {
        return Ok(Value::Undefined);
    };
    let p = arg(args, 1).as_f64().unwrap_or(0.0) as i32;
    Ok(Value::Number(round(n, p)))
}

fn f_sqrt(_: &mut Evaluator, args: &[Value], _: &Ctx) -> Result<Value> {
    let Value::Number(n) = arg(args, 0) else {
        return Ok(Value::Undefined);
    };
    if n < 0.0 {
        return Err(err_val("D3060", &js_number_string(n)));
    }
    Ok(Value::Number(n.sqrt()))
}

fn f_power(_: &mut Evaluator, args: &[Value], _: &Ctx) -> Result<Value> {
    let Value::Number(b) = arg(args, 0) else {
        return Ok(Value::Undefined);
    };
    let e = arg(args, 1).as_f64().unwrap_or(f64::NAN);
    let r = b.powf(e);
    if !r.is_finite() {
        return Err(Error::new(
            "D3061",
            None,
            &js_number_string(e),
            &js_number_string(b),
        ));
    }
    Ok(Value::Number(r))
}

fn f_random(ev: &mut Evaluator, _: &[Value], _: &Ctx) -> Result<Value> {
    Ok(Value::Number((ev.rng)()))
}

fn to_radix(mut n: u64, radix: u32) -> String {
    if n == 0 {
        return "0".into();
    }
    let mut digits = vec![];
    while n > 0 {
        digits.push(std::char::from_digit((n % radix as u64) as u32, radix).unwrap_or('?'));
        n /= radix as u64;
    }
    digits.iter().rev().collect()
}

fn f_format_base(_: &mut Evaluator, args: &[Value], _: &Ctx) -> Result<Value> {
    let Value::Number(n) = arg(args, 0) else {
        return Ok(Value::Undefined);
    };
    let n = round(n, 0);
    let radix = match arg(args, 1) {
        Value::Number(r) => round(r, 0),
        _ => 10.0,
    };
    if !(2.0..=36.0).contains(&radix) {
        return Err(err_val("D3100", &js_number_string(radix)));
    }
    let s = to_radix(n.abs() as u64, radix as u32);
    Ok(Value::string(&if n < 0.0 { format!("-{s}") } else { s }))
}

struct Props {
    decimal: char,
    grouping: char,
    exponent: char,
    minus: char,
    percent: char,
    per_mille: char,
    zero: char,
    digit: char,
    pattern: char,
}

struct Parts {
    prefix: Vec<char>,
    suffix: Vec<char>,
    active: Vec<char>,
    mantissa: Vec<char>,
    exponent: Option<Vec<char>>,
    integer: Vec<char>,
    fractional: Vec<char>,
    sub: Vec<char>,
}

#[derive(Clone)]
struct Pic {
    int_grouping: Vec<usize>,
    regular: usize,
    min_int: usize,
    scaling: usize,
    prefix: Vec<char>,
    frac_grouping: Vec<usize>,
    min_frac: usize,
    max_frac: usize,
    min_exp: usize,
    suffix: Vec<char>,
    picture: Vec<char>,
}

fn index_of(h: &[char], needle: &[char], from: usize) -> Option<usize> {
    if needle.is_empty() || h.len() < needle.len() {
        return None;
    }
    (from..=h.len() - needle.len()).find(|&i| h[i..i + needle.len()] == *needle)
}

fn f_format_number(_: &mut Evaluator, args: &[Value], _: &Ctx) -> Result<Value> {
    let Value::Number(value) = arg(args, 0) else {
        return Ok(Value::Undefined);
    };
    let picture = arg(args, 1);
    let picture = picture.as_str().unwrap_or("");
    let mut p = Props {
        decimal: '.',
        grouping: ',',
        exponent: 'e',
        minus: '-',
        percent: '%',
        per_mille: '\u{2030}',
        zero: '0',
        digit: '#',
        pattern: ';',
    };
    if let Value::Object(o) = arg(args, 2) {
        for (k, v) in o.iter() {
            let Some(c) = v.as_str().and_then(|s| s.chars().next()) else {
                continue;
            };
            match k.as_str() {
                "decimal-separator" => p.decimal = c,
                "grouping-separator" => p.grouping = c,
                "exponent-separator" => p.exponent = c,
                "minus-sign" => p.minus = c,
                "percent" => p.percent = c,
                "per-mille" => p.per_mille = c,
                "zero-digit" => p.zero = c,
                "digit" => p.digit = c,
                "pattern-separator" => p.pattern = c,
                _ => {}
            }
        }
    }
    Ok(Value::string(&format_number(value, picture, &p)?))
}

fn format_number(value: f64, picture: &str, p: &Props) -> Result<String> {
    let family: Vec<char> = (0..10)
        .filter_map(|i| char::from_u32(p.zero as u32 + i))
        .collect();
    let is_digit = |c: char| family.contains(&c);
    let mut active: Vec<char> = family.clone();
    active.extend([p.decimal, p.exponent, p.grouping, p.digit, p.pattern]);
    let pic: Vec<char> = picture.chars().collect();
    let subs: Vec<Vec<char>> = pic.split(|c| *c == p.pattern).map(|s| s.to_vec()).collect();
    if subs.len() > 2 {
        return Err(err("D3080"));
    }
    let split_parts = |sub: &Vec<char>| -> Parts {
        let is_active = |c: &char| active.contains(c) && *c != p.exponent;
        let prefix: Vec<char> = match sub.iter().position(is_active) {
            Some(i) => sub[..i].to_vec(),
            None => vec![],
        };
        let suffix: Vec<char> = match sub.iter().rposition(is_active) {
            Some(i) => sub[i + 1..].to_vec(),
            None => vec![],
        };
        let end = sub.len().saturating_sub(suffix.len()).max(prefix.len());
        let active_part: Vec<char> = sub[prefix.len()..end].to_vec();
        let exp_pos = index_of(sub, &[p.exponent], prefix.len());
        let (mantissa, exponent) = match exp_pos {
            Some(e) if e <= sub.len() - suffix.len() => {
                let e = e - prefix.len();
                (
                    active_part[..e.min(active_part.len())].to_vec(),
                    Some(active_part[(e + 1).min(active_part.len())..].to_vec()),
                )
            }
            _ => (active_part.clone(), None),
        };
        let (integer, fractional) = match mantissa.iter().position(|c| *c == p.decimal) {
            None => (mantissa.clone(), suffix.clone()),
            Some(d) => (mantissa[..d].to_vec(), mantissa[d + 1..].to_vec()),
        };
        Parts {
            prefix,
            suffix,
            active: active_part,
            mantissa,
            exponent,
            integer,
            fractional,
            sub: sub.clone(),
        }
    };
    let parts: Vec<Parts> = subs.iter().map(split_parts).collect();
    for part in &parts {
        let sub = &part.sub;
        let first = |c: char| sub.iter().position(|x| *x == c);
        let last = |c: char| sub.iter().rposition(|x| *x == c);
        let mut error = None;
        if first(p.decimal) != last(p.decimal) {
            error = Some("D3081");
        }
        if first(p.percent) != last(p.percent) {
            error = Some("D3082");
        }
        if first(p.per_mille) != last(p.per_mille) {
            error = Some("D3083");
        }
        if first(p.percent).is_some() && first(p.per_mille).is_some() {
            error = Some("D3084");
        }
        if !part.mantissa.iter().any(|c| is_digit(*c) || *c == p.digit) {
            error = Some("D3085");
        }
        if part.active.iter().any(|c| !active.contains(c)) {
            error = Some("D3086");
        }
        match first(p.decimal) {
            Some(d) => {
                if (d > 0 && sub[d - 1] == p.grouping) || sub.get(d + 1) == Some(&p.grouping) {
                    error = Some("D3087");
                }
            }
            None => {
                if part.integer.last() == Some(&p.grouping) {
                    error = Some("D3088");
                }
            }
        }
        if index_of(sub, &[p.grouping, p.grouping], 0).is_some() {
            error = Some("D3089");
        }
        if let Some(od) = part.integer.iter().position(|c| *c == p.digit)
            && part.integer[..od].iter().any(|c| is_digit(*c))
        {
            error = Some("D3090");
        }
        if let Some(od) = part.fractional.iter().rposition(|c| *c == p.digit)
            && part.fractional[od..].iter().any(|c| is_digit(*c))
        {
            error = Some("D3091");
        }
        if let Some(e) = &part.exponent {
            if !e.is_empty() && (first(p.percent).is_some() || first(p.per_mille).is_some()) {
                error = Some("D3092");
            }
            if e.is_empty() || e.iter().any(|c| !is_digit(*c)) {
                error = Some("D3093");
            }
        }
        if let Some(code) = error {
            return Err(err(code));
        }
    }
    let analyse = |part: &Parts| -> Pic {
        let grouping_positions = |pt: &[char], to_left: bool| -> Vec<usize> {
            let mut out = vec![];
            let mut gp = pt.iter().position(|c| *c == p.grouping);
            while let Some(g) = gp {
                let slice = if to_left { &pt[..g] } else { &pt[g..] };
                out.push(
                    slice
                        .iter()
                        .filter(|c| is_digit(**c) || **c == p.digit)
                        .count(),
                );
                gp = index_of(&part.integer, &[p.grouping], g + 1);
            }
            out
        };
        let int_grouping = grouping_positions(&part.integer, false);
        let regular = if int_grouping.is_empty() {
            0
        } else {
            fn gcd(a: usize, b: usize) -> usize {
                if b == 0 { a } else { gcd(b, a % b) }
            }
            let factor = int_grouping.iter().cloned().reduce(gcd).unwrap_or(0);
            if (1..=int_grouping.len()).all(|i| int_grouping.contains(&(i * factor))) {
                factor
            } else {
                0
            }
        };
        let frac_grouping = grouping_positions(&part.fractional, true);
        let mut min_int = part.integer.iter().filter(|c| is_digit(**c)).count();
        let scaling = min_int;
        let mut min_frac = part.fractional.iter().filter(|c| is_digit(**c)).count();
        let mut max_frac = part
            .fractional
            .iter()
            .filter(|c| is_digit(**c) || **c == p.digit)
            .count();
        let exp_present = part.exponent.is_some();
        if min_int == 0 && max_frac == 0 {
            if exp_present {
                min_frac = 1;
                max_frac = 1;
            } else {
                min_int = 1;
            }
        }
        if exp_present && min_int == 0 && part.integer.contains(&p.digit) {
            min_int = 1;
        }
        if min_int == 0 && min_frac == 0 {
            min_frac = 1;
        }
        let min_exp = part
            .exponent
            .as_ref()
            .map(|e| e.iter().filter(|c| is_digit(**c)).count())
            .unwrap_or(0);
        Pic {
            int_grouping,
            regular,
            min_int,
            scaling,
            prefix: part.prefix.clone(),
            frac_grouping,
            min_frac,
            max_frac,
            min_exp,
            suffix: part.suffix.clone(),
            picture: part.sub.clone(),
        }
    };
    let mut vars: Vec<Pic> = parts.iter().map(analyse).collect();
    if vars.len() == 1 {
        let mut neg = vars[0].clone();
        neg.prefix.insert(0, p.minus);
        vars.push(neg);
    }
    let pic = if value >= 0.0 { &vars[0] } else { &vars[1] };
    let adjusted = if pic.picture.contains(&p.percent) {
        value * 100.0
    } else if pic.picture.contains(&p.per_mille) {
        value * 1000.0
    } else {
        value
    };
    let mut mantissa = adjusted;
    let mut exponent: Option<i32> = None;
    if pic.min_exp != 0 {
        let max_m = 10f64.powi(pic.scaling as i32);
        let min_m = 10f64.powi(pic.scaling as i32 - 1);
        let mut e = 0;
        // Zero has exponent zero; negative numbers compare by magnitude.
        if mantissa != 0.0 {
            while mantissa.abs() < min_m {
                mantissa *= 10.0;
                e -= 1;
            }
            while mantissa.abs() > max_m {
                mantissa /= 10.0;
                e += 1;
            }
        }
        exponent = Some(e);
    }
    let rounded = round(mantissa, pic.max_frac as i32);
    let make_string = |v: f64, dp: usize| -> Vec<char> {
        let s = format!("{:.*}", dp, v.abs());
        s.chars()
            .map(|c| {
                if c.is_ascii_digit() {
                    family[(c as u8 - b'0') as usize]
                } else {
                    c
                }
            })
            .collect()
    };
    let mut sv = make_string(rounded, pic.max_frac);
    match sv.iter().position(|c| *c == '.') {
        None => sv.push(p.decimal),
        Some(i) => sv[i] = p.decimal,
    }
    while sv.first() == Some(&p.zero) {
        sv.remove(0);
    }
    while sv.last() == Some(&p.zero) {
        sv.pop();
    }
    let dp = sv.iter().position(|c| *c == p.decimal).unwrap_or(0);
    let pad_left = pic.min_int as i64 - dp as i64;
    let pad_right = pic.min_frac as i64 - (sv.len() as i64 - dp as i64 - 1);
    if pad_left > 0 {
        for _ in 0..pad_left {
            sv.insert(0, p.zero);
        }
    }
    if pad_right > 0 {
        for _ in 0..pad_right {
            sv.push(p.zero);
        }
    }
    let mut dp = sv.iter().position(|c| *c == p.decimal).unwrap_or(0);
    if let Some(groups) = ((dp as i64 - 1).max(0) as usize).checked_div(pic.regular) {
        for g in 1..=groups {
            let at = dp - g * pic.regular;
            sv.insert(at, p.grouping);
        }
    } else {
        for pos in &pic.int_grouping {
            if *pos <= dp {
                sv.insert(dp - pos, p.grouping);
                dp += 1;
            }
        }
    }
    let dp = sv.iter().position(|c| *c == p.decimal).unwrap_or(0);
    for pos in &pic.frac_grouping {
        let at = (pos + dp + 1).min(sv.len());
        sv.insert(at, p.grouping);
    }
    let dp = sv.iter().position(|c| *c == p.decimal).unwrap_or(0);
    if pic.min_frac == 0 && dp == sv.len() - 1 {
        sv.pop();
    }
    if let Some(e) = exponent {
        let mut se = make_string(e as f64, 0);
        let pad = pic.min_exp as i64 - se.len() as i64;
        for _ in 0..pad.max(0) {
            se.insert(0, p.zero);
        }
        sv.push(p.exponent);
        if e < 0 {
            sv.push(p.minus);
        }
        sv.extend(se);
    }
    let mut out: String = pic.prefix.iter().collect();
    out.extend(sv);
    out.extend(pic.suffix.iter());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_is_half_to_even() {
        assert_eq!(round(2.5, 0), 2.0);
        assert_eq!(round(3.5, 0), 4.0);
        assert_eq!(round(-2.5, 0), -2.0);
        assert_eq!(round(1.255, 2), 1.26);
        assert_eq!(round(125.0, -1), 120.0);
    }

    #[test]
    fn number_casts() {
        assert_eq!(parse_number("0x12"), Some(18.0));
        assert_eq!(parse_number("-1.5e2"), Some(-150.0));
        assert_eq!(parse_number("1."), None);
        assert_eq!(parse_number(" 1"), None);
    }

    #[test]
    fn pictures() {
        let p = Props {
            decimal: '.',
            grouping: ',',
            exponent: 'e',
            minus: '-',
            percent: '%',
            per_mille: '\u{2030}',
            zero: '0',
            digit: '#',
            pattern: ';',
        };
        assert_eq!(format_number(12345.6, "#,###.00", &p).unwrap(), "12,345.60");
        assert_eq!(format_number(0.14, "01%", &p).unwrap(), "14%");
        assert_eq!(
            format_number(1234.5678, "00.000e0", &p).unwrap(),
            "12.346e2"
        );
        assert_eq!(format_number(-6.0, "000;(000)", &p).unwrap(), "(006)");
    }
}
