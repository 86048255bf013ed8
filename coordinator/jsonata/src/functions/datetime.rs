//! Date/time and integer-picture functions (jsonata.js `datetime.js`): `$now`, `$millis`,
//! `$fromMillis`/`$toMillis` with XPath F&O picture strings, `$formatInteger` and
//! `$parseInteger` (decimal, letters, roman numerals, English words). The current time
//! comes from the evaluation environment, never from the clock.

use regex::Regex;

use super::{Ctx, Imp, arg};
use crate::errors::{Result, err, err_val};
use crate::evaluator::Evaluator;
use crate::value::{Value, js_number_string};

pub const DEFS: &[(&str, &str, Imp)] = &[
    ("now", "<s?s?:s>", f_now),
    ("millis", "<:n>", f_millis),
    ("fromMillis", "<n-s?s?:s>", f_from_millis),
    ("toMillis", "<s-s?:n>", f_to_millis),
    ("formatInteger", "<n-s:s>", f_format_integer),
    ("parseInteger", "<s-s:n>", f_parse_integer),
];

const MILLIS_PER_DAY: i64 = 86_400_000;

/// Days since 1970-01-01 of a proleptic Gregorian date (month 1-12).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// JavaScript's `Date.UTC` (month 0-based, out-of-range fields carry over).
fn date_utc(y: i64, m: i64, d: i64, h: i64, mi: i64, s: i64, ms: i64) -> i64 {
    let y = y + m.div_euclid(12);
    let m = m.rem_euclid(12);
    let days = days_from_civil(y, m + 1, 1) + d - 1;
    days * MILLIS_PER_DAY + h * 3_600_000 + mi * 60_000 + s * 1000 + ms
}

struct Date {
    millis: i64,
    year: i64,
    month: i64, // 0-based
    day: i64,
    hours: i64,
    minutes: i64,
    seconds: i64,
    ms: i64,
    weekday: i64, // 0 = Sunday
}

fn date(millis: i64) -> Date {
    let days = millis.div_euclid(MILLIS_PER_DAY);
    let rem = millis.rem_euclid(MILLIS_PER_DAY);
    let (y, m, d) = civil_from_days(days);
    Date {
        millis,
        year: y,
        month: m - 1,
        day: d,
        hours: rem / 3_600_000,
        minutes: rem / 60_000 % 60,
        seconds: rem / 1000 % 60,
        ms: rem % 1000,
        weekday: (days + 4).rem_euclid(7),
    }
}

fn f_millis(ev: &mut Evaluator, _: &[Value], _: &Ctx) -> Result<Value> {
    Ok(Value::Number(ev.now_millis as f64))
}

fn f_now(ev: &mut Evaluator, args: &[Value], _: &Ctx) -> Result<Value> {
    let picture = arg(args, 0);
    let tz = arg(args, 1);
    Ok(Value::string(&format_date_time(
        ev.now_millis,
        picture.as_str(),
        tz.as_str(),
    )?))
}

fn f_from_millis(_: &mut Evaluator, args: &[Value], _: &Ctx) -> Result<Value> {
    let Value::Number(ms) = arg(args, 0) else {
        return Ok(Value::Undefined);
    };
    let picture = arg(args, 1);
    let tz = arg(args, 2);
    Ok(Value::string(&format_date_time(
        ms as i64,
        picture.as_str(),
        tz.as_str(),
    )?))
}

fn f_to_millis(ev: &mut Evaluator, args: &[Value], _: &Ctx) -> Result<Value> {
    let Value::String(ts) = arg(args, 0) else {
        return Ok(Value::Undefined);
    };
    match arg(args, 1) {
        Value::String(p) => Ok(match parse_date_time(&ts, &p, ev.now_millis)? {
            Some(ms) => Value::Number(ms as f64),
            None => Value::Undefined,
        }),
        _ => match parse_iso(&ts) {
            Some(ms) => Ok(Value::Number(ms as f64)),
            None => Err(err_val("D3110", &ts)),
        },
    }
}

/// ISO 8601 timestamps as the reference implementation accepts them (a missing offset
/// means UTC).
pub fn parse_iso(s: &str) -> Option<i64> {
    static RE: std::sync::OnceLock<Regex> = std::sync::OnceLock::new();
    let re = RE.get_or_init(|| {
        Regex::new(r"^(\d{4})(?:-([01]\d))?(?:-([0-3]\d))?(?:T([0-2]\d):([0-5]\d):([0-5]\d))?(\.\d+)?(?:([+-])([0-2]\d):?([0-5]\d)|(Z))?$")
            .expect("static regex")
    });
    let c = re.captures(s)?;
    let n = |i: usize, d: i64| {
        c.get(i)
            .and_then(|m| m.as_str().parse::<i64>().ok())
            .unwrap_or(d)
    };
    let (y, mo, d) = (n(1, 1970), n(2, 1), n(3, 1));
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) {
        return None;
    }
    let ms = c
        .get(7)
        .map(|m| {
            let f = format!("{:0<3}", &m.as_str()[1..]);
            f[..3].parse::<i64>().unwrap_or(0)
        })
        .unwrap_or(0);
    let mut t = date_utc(y, mo - 1, d, n(4, 0), n(5, 0), n(6, 0), ms);
    if let Some(sign) = c.get(8) {
        let off = n(9, 0) * 60 + n(10, 0);
        t -= if sign.as_str() == "-" { -off } else { off } * 60_000;
    }
    Some(t)
}

// ---- integer pictures ----

#[derive(Clone, Copy, PartialEq, Debug)]
enum Primary {
    Decimal,
    Letters,
    Roman,
    Words,
    Sequence,
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Case {
    Upper,
    Lower,
    Title,
}

#[derive(Clone, Debug)]
struct Sep {
    position: usize,
    character: char,
}

#[derive(Clone, Debug)]
struct IntFormat {
    primary: Primary,
    case: Case,
    ordinal: bool,
    zero_code: u32,
    mandatory: usize,
    optional: usize,
    regular: Option<Sep>,
    separators: Vec<Sep>,
    token: String,
    parse_width: Option<usize>,
}

const DECIMAL_GROUPS: &[u32] = &[
    0x30, 0x0660, 0x06F0, 0x07C0, 0x0966, 0x09E6, 0x0A66, 0x0AE6, 0x0B66, 0x0BE6, 0x0C66, 0x0CE6,
    0x0D66, 0x0DE6, 0x0E50, 0x0ED0, 0x0F20, 0x1040, 0x1090, 0x17E0, 0x1810, 0x1946, 0x19D0, 0x1A80,
    0x1A90, 0x1B50, 0x1BB0, 0x1C40, 0x1C50, 0xA620, 0xA8D0, 0xA900, 0xA9D0, 0xA9F0, 0xAA50, 0xABF0,
    0xFF10,
];

fn regular_template(seps: &[Sep]) -> Option<Sep> {
    let first = seps.first()?;
    if seps.iter().any(|s| s.character != first.character) {
        return None;
    }
    fn gcd(a: usize, b: usize) -> usize {
        if b == 0 { a } else { gcd(b, a % b) }
    }
    let positions: Vec<usize> = seps.iter().map(|s| s.position).collect();
    let factor = positions.iter().cloned().reduce(gcd)?;
    // A separator at the very end (position 0) has no regular spacing.
    if factor > 0 && (1..=positions.len()).all(|i| positions.contains(&(i * factor))) {
        Some(Sep {
            position: factor,
            character: first.character,
        })
    } else {
        None
    }
}

fn analyse_integer_picture(picture: &str) -> Result<IntFormat> {
    let mut f = IntFormat {
        primary: Primary::Decimal,
        case: Case::Lower,
        ordinal: false,
        zero_code: 0x30,
        mandatory: 0,
        optional: 0,
        regular: None,
        separators: vec![],
        token: String::new(),
        parse_width: None,
    };
    let primary = match picture.rfind(';') {
        None => picture,
        Some(i) => {
            if picture[i + 1..].starts_with('o') {
                f.ordinal = true;
            }
            &picture[..i]
        }
    };
    match primary {
        "A" => {
            f.case = Case::Upper;
            f.primary = Primary::Letters;
        }
        "a" => f.primary = Primary::Letters,
        "I" => {
            f.case = Case::Upper;
            f.primary = Primary::Roman;
        }
        "i" => f.primary = Primary::Roman,
        "W" => {
            f.case = Case::Upper;
            f.primary = Primary::Words;
        }
        "Ww" => {
            f.case = Case::Title;
            f.primary = Primary::Words;
        }
        "w" => f.primary = Primary::Words,
        _ => {
            let mut zero: Option<u32> = None;
            let mut sep_pos = 0;
            for c in primary.chars().rev() {
                let cp = c as u32;
                if let Some(g) = DECIMAL_GROUPS.iter().find(|g| cp >= **g && cp <= **g + 9) {
                    f.mandatory += 1;
                    sep_pos += 1;
                    match zero {
                        None => zero = Some(*g),
                        Some(z) if z != *g => return Err(err("D3131")),
                        _ => {}
                    }
                } else if c == '#' {
                    sep_pos += 1;
                    f.optional += 1;
                } else {
                    f.separators.push(Sep {
                        position: sep_pos,
                        character: c,
                    });
                }
            }
            if f.mandatory > 0 {
                f.zero_code = zero.unwrap_or(0x30);
                f.regular = regular_template(&f.separators);
            } else {
                f.primary = Primary::Sequence;
                f.token = primary.to_string();
            }
        }
    }
    Ok(f)
}

const FEW: [&str; 20] = [
    "Zero",
    "One",
    "Two",
    "Three",
    "Four",
    "Five",
    "Six",
    "Seven",
    "Eight",
    "Nine",
    "Ten",
    "Eleven",
    "Twelve",
    "Thirteen",
    "Fourteen",
    "Fifteen",
    "Sixteen",
    "Seventeen",
    "Eighteen",
    "Nineteen",
];
const ORDINALS: [&str; 20] = [
    "Zeroth",
    "First",
    "Second",
    "Third",
    "Fourth",
    "Fifth",
    "Sixth",
    "Seventh",
    "Eighth",
    "Ninth",
    "Tenth",
    "Eleventh",
    "Twelfth",
    "Thirteenth",
    "Fourteenth",
    "Fifteenth",
    "Sixteenth",
    "Seventeenth",
    "Eighteenth",
    "Nineteenth",
];
const DECADES: [&str; 9] = [
    "Twenty", "Thirty", "Forty", "Fifty", "Sixty", "Seventy", "Eighty", "Ninety", "Hundred",
];
const MAGNITUDES: [&str; 4] = ["Thousand", "Million", "Billion", "Trillion"];

/// English words for a number (f64 so that magnitudes beyond "trillion" compose, as in
/// "ten billion trillion").
fn number_to_words(num: f64, prev: bool, ord: bool) -> String {
    let and = if prev { " and " } else { "" };
    let comma = if prev { ", " } else { "" };
    if num <= 19.0 {
        let i = num as usize;
        format!("{and}{}", if ord { ORDINALS[i] } else { FEW[i] })
    } else if num < 100.0 {
        let tens = (num / 10.0).floor() as usize;
        let rem = num % 10.0;
        let mut w = format!("{and}{}", DECADES[tens - 2]);
        if rem > 0.0 {
            w.push('-');
            w.push_str(&number_to_words(rem, false, ord));
        } else if ord {
            w.pop();
            w.push_str("ieth");
        }
        w
    } else if num < 1000.0 {
        let mut w = format!("{comma}{} Hundred", FEW[(num / 100.0).floor() as usize]);
        let rem = num % 100.0;
        if rem > 0.0 {
            w.push_str(&number_to_words(rem, true, ord));
        } else if ord {
            w.push_str("th");
        }
        w
    } else {
        let mut mag = (num.log10() / 3.0).floor() as usize;
        if mag > MAGNITUDES.len() {
            mag = MAGNITUDES.len();
        }
        let factor = 10f64.powi(mag as i32 * 3);
        let mant = (num / factor).floor();
        let rem = num - mant * factor;
        let mut w = format!(
            "{comma}{} {}",
            number_to_words(mant, false, false),
            MAGNITUDES[mag - 1]
        );
        if rem > 0.0 {
            w.push_str(&number_to_words(rem, true, ord));
        } else if ord {
            w.push_str("th");
        }
        w
    }
}

fn word_value(word: &str) -> Option<f64> {
    for (i, w) in FEW.iter().enumerate() {
        if w.eq_ignore_ascii_case(word) {
            return Some(i as f64);
        }
    }
    for (i, w) in ORDINALS.iter().enumerate() {
        if w.eq_ignore_ascii_case(word) {
            return Some(i as f64);
        }
    }
    for (i, w) in DECADES.iter().enumerate() {
        let lw = w.to_lowercase();
        let ieth = format!("{}ieth", &lw[..lw.len() - 1]);
        if lw == word || ieth == word {
            return Some((i as f64 + 2.0) * 10.0);
        }
    }
    if word == "hundredth" {
        return Some(100.0);
    }
    for (i, w) in MAGNITUDES.iter().enumerate() {
        let lw = w.to_lowercase();
        if lw == word || format!("{lw}th") == word {
            return Some(10f64.powi((i as i32 + 1) * 3));
        }
    }
    None
}

fn words_to_number(text: &str) -> Option<f64> {
    static RE: std::sync::OnceLock<Regex> = std::sync::OnceLock::new();
    let re = RE.get_or_init(|| Regex::new(r",\s|\sand\s|[\s\\-]").expect("static regex"));
    let mut segs: Vec<f64> = vec![0.0];
    for part in re.split(text) {
        let v = word_value(part)?;
        if v < 100.0 {
            let mut top = segs.pop().unwrap_or(0.0);
            if top >= 1000.0 {
                segs.push(top);
                top = 0.0;
            }
            segs.push(top + v);
        } else {
            let top = segs.pop().unwrap_or(0.0);
            segs.push(top * v);
        }
    }
    Some(segs.iter().sum::<f64>())
}

const ROMAN: [(u64, &str); 13] = [
    (1000, "m"),
    (900, "cm"),
    (500, "d"),
    (400, "cd"),
    (100, "c"),
    (90, "xc"),
    (50, "l"),
    (40, "xl"),
    (10, "x"),
    (9, "ix"),
    (5, "v"),
    (4, "iv"),
    (1, "i"),
];

fn to_roman(mut v: u64) -> String {
    let mut out = String::new();
    for (n, s) in ROMAN {
        while v >= n {
            out.push_str(s);
            v -= n;
        }
    }
    out
}

fn from_roman(s: &str) -> f64 {
    let mut dec: i64 = 0;
    let mut max = 1;
    for c in s.chars().rev() {
        let v = match c.to_ascii_uppercase() {
            'M' => 1000,
            'D' => 500,
            'C' => 100,
            'L' => 50,
            'X' => 10,
            'V' => 5,
            'I' => 1,
            _ => 0,
        };
        if v < max {
            dec -= v;
        } else {
            max = v;
            dec += v;
        }
    }
    dec as f64
}

fn to_letters(mut v: u64, a: char) -> String {
    let mut letters = vec![];
    while v > 0 {
        letters.insert(
            0,
            char::from_u32(((v - 1) % 26) as u32 + a as u32).unwrap_or('?'),
        );
        v = (v - 1) / 26;
    }
    letters.into_iter().collect()
}

fn from_letters(s: &str, a: char) -> f64 {
    let mut dec = 0.0;
    for (i, c) in s.chars().rev().enumerate() {
        dec += (c as u32 as f64 - a as u32 as f64 + 1.0) * 26f64.powi(i as i32);
    }
    dec
}

fn format_int(value: i64, f: &IntFormat) -> Result<String> {
    format_int_f(value as f64, f)
}

fn format_int_f(value: f64, f: &IntFormat) -> Result<String> {
    if f.mandatory > 10_000 {
        return Err(crate::errors::too_large("Integer picture width"));
    }
    let negative = value < 0.0;
    let fv = value.abs();
    let v = fv.min(u64::MAX as f64) as u64;
    let mut s = match f.primary {
        Primary::Letters => to_letters(v, if f.case == Case::Upper { 'A' } else { 'a' }),
        Primary::Roman => {
            let r = to_roman(v);
            if f.case == Case::Upper {
                r.to_uppercase()
            } else {
                r
            }
        }
        Primary::Words => {
            let w = number_to_words(fv, false, f.ordinal);
            match f.case {
                Case::Upper => w.to_uppercase(),
                Case::Lower => w.to_lowercase(),
                Case::Title => w,
            }
        }
        Primary::Decimal => {
            let mut s: Vec<char> = js_number_string(fv).chars().collect();
            while s.len() < f.mandatory {
                s.insert(0, '0');
            }
            if f.zero_code != 0x30 {
                s = s
                    .into_iter()
                    .map(|c| char::from_u32(c as u32 + f.zero_code - 0x30).unwrap_or(c))
                    .collect();
            }
            if let Some(r) = &f.regular {
                let n = (s.len() - 1) / r.position;
                for ii in (1..=n).rev() {
                    let pos = s.len() - ii * r.position;
                    s.insert(pos, r.character);
                }
            } else {
                for sep in f.separators.iter().rev() {
                    let pos = s.len().saturating_sub(sep.position);
                    s.insert(pos, sep.character);
                }
            }
            let mut s: String = s.into_iter().collect();
            if f.ordinal {
                let cs: Vec<char> = s.chars().collect();
                let last = cs.last().copied();
                let mut suffix = match last {
                    Some('1') => "st",
                    Some('2') => "nd",
                    Some('3') => "rd",
                    _ => "th",
                };
                if cs.len() > 1 && cs[cs.len() - 2] == '1' {
                    suffix = "th";
                }
                s.push_str(suffix);
            }
            s
        }
        Primary::Sequence => return Err(err_val("D3130", &f.token)),
    };
    if negative {
        s.insert(0, '-');
    }
    Ok(s)
}

fn f_format_integer(_: &mut Evaluator, args: &[Value], _: &Ctx) -> Result<Value> {
    let Value::Number(n) = arg(args, 0) else {
        return Ok(Value::Undefined);
    };
    let pic = arg(args, 1);
    let f = analyse_integer_picture(pic.as_str().unwrap_or(""))?;
    Ok(Value::string(&format_int_f(n.floor(), &f)?))
}

fn parse_int_with(f: &IntFormat, value: &str) -> Result<Option<f64>> {
    Ok(match f.primary {
        Primary::Letters => Some(from_letters(
            value,
            if f.case == Case::Upper { 'A' } else { 'a' },
        )),
        Primary::Roman => Some(from_roman(value)),
        Primary::Words => words_to_number(&value.to_lowercase()),
        Primary::Decimal => {
            let mut digits: String = value.to_string();
            if f.ordinal {
                let n = digits.chars().count();
                digits = digits.chars().take(n.saturating_sub(2)).collect();
            }
            match &f.regular {
                Some(r) => digits = digits.replace(r.character, ""),
                None => {
                    for s in &f.separators {
                        digits = digits.replace(s.character, "");
                    }
                }
            }
            if f.zero_code != 0x30 {
                digits = digits
                    .chars()
                    .map(|c| {
                        (c as u32)
                            .checked_sub(f.zero_code)
                            .filter(|d| *d < 10)
                            .and_then(|d| char::from_u32(d + 0x30))
                            .unwrap_or(c)
                    })
                    .collect();
            }
            let d: String = digits.chars().take_while(|c| c.is_ascii_digit()).collect();
            d.parse::<f64>().ok()
        }
        Primary::Sequence => return Err(err_val("D3130", &f.token)),
    })
}

fn f_parse_integer(_: &mut Evaluator, args: &[Value], _: &Ctx) -> Result<Value> {
    let Value::String(s) = arg(args, 0) else {
        return Ok(Value::Undefined);
    };
    let pic = arg(args, 1);
    let f = analyse_integer_picture(pic.as_str().unwrap_or(""))?;
    Ok(match parse_int_with(&f, &s)? {
        Some(n) => Value::Number(n),
        None => Value::Undefined,
    })
}

// ---- date/time pictures ----

#[derive(Clone, Debug)]
struct Marker {
    component: char,
    presentation1: String,
    presentation2: Option<char>,
    width_min: Option<usize>,
    width_max: Option<usize>,
    names: Option<Case>,
    int_format: Option<IntFormat>,
    n: i64,
}

#[derive(Clone, Debug)]
enum Part {
    Literal(String),
    Marker(Box<Marker>),
}

fn default_presentation(c: char) -> Option<&'static str> {
    Some(match c {
        'Y' | 'M' | 'D' | 'd' | 'W' | 'w' | 'X' | 'x' | 'H' | 'h' | 'f' => "1",
        'F' | 'P' | 'C' | 'E' => "n",
        'm' | 's' => "01",
        'Z' | 'z' => "01:01",
        _ => return None,
    })
}

fn parse_width(w: &str) -> Option<usize> {
    if w == "*" { None } else { w.parse().ok() }
}

fn analyse_date_time_picture(picture: &str) -> Result<Vec<Part>> {
    let pic: Vec<char> = picture.chars().collect();
    let mut spec = vec![];
    let add_literal = |spec: &mut Vec<Part>, start: usize, end: usize| {
        if end > start {
            let lit: String = pic[start..end].iter().collect();
            spec.push(Part::Literal(lit.replace("]]", "]")));
        }
    };
    let mut start = 0;
    let mut pos = 0;
    while pos < pic.len() {
        if pic[pos] == '[' {
            if pic.get(pos + 1) == Some(&'[') {
                add_literal(&mut spec, start, pos);
                spec.push(Part::Literal("[".into()));
                pos += 2;
                start = pos;
                continue;
            }
            add_literal(&mut spec, start, pos);
            start = pos;
            let Some(close) = pic[start..]
                .iter()
                .position(|c| *c == ']')
                .map(|i| i + start)
            else {
                return Err(err("D3135"));
            };
            pos = close;
            let marker: String = pic[start + 1..pos]
                .iter()
                .filter(|c| !c.is_whitespace())
                .collect();
            let component = marker.chars().next().unwrap_or(' ');
            let mut m = Marker {
                component,
                presentation1: String::new(),
                presentation2: None,
                width_min: None,
                width_max: None,
                names: None,
                int_format: None,
                n: 0,
            };
            let rest: String = marker.chars().skip(1).collect();
            let pres_mod = match rest.rfind(',') {
                Some(comma) => {
                    let width = &rest[comma + 1..];
                    let (min, max) = match width.find('-') {
                        None => (width, None),
                        Some(d) => (&width[..d], Some(&width[d + 1..])),
                    };
                    m.width_min = parse_width(min);
                    m.width_max = max.and_then(parse_width);
                    rest[..comma].to_string()
                }
                None => rest,
            };
            let pm: Vec<char> = pres_mod.chars().collect();
            if pm.len() == 1 {
                m.presentation1 = pres_mod.clone();
            } else if pm.len() > 1 {
                let last = pm[pm.len() - 1];
                if "atco".contains(last) {
                    m.presentation2 = Some(last);
                    m.presentation1 = pm[..pm.len() - 1].iter().collect();
                } else {
                    m.presentation1 = pres_mod.clone();
                }
            } else {
                m.presentation1 = default_presentation(component)
                    .ok_or_else(|| err_val("D3132", &component.to_string()))?
                    .to_string();
            }
            if default_presentation(component).is_none() {
                return Err(err_val("D3132", &component.to_string()));
            }
            let p1: Vec<char> = m.presentation1.chars().collect();
            if p1.first() == Some(&'n') {
                m.names = Some(Case::Lower);
            } else if p1.first() == Some(&'N') {
                m.names = Some(if p1.get(1) == Some(&'n') {
                    Case::Title
                } else {
                    Case::Upper
                });
            } else if "YMDdFWwXxHhmsf".contains(component) {
                let mut ip = m.presentation1.clone();
                if let Some(p2) = m.presentation2 {
                    ip.push(';');
                    ip.push(p2);
                }
                let mut f = analyse_integer_picture(&ip)?;
                if let Some(min) = m.width_min
                    && f.mandatory < min
                {
                    f.mandatory = min;
                }
                if component == 'Y' {
                    m.n = -1;
                    if let Some(max) = m.width_max {
                        m.n = max as i64;
                        f.mandatory = max;
                    } else {
                        let w = f.mandatory + f.optional;
                        if w >= 2 {
                            m.n = w as i64;
                        }
                    }
                }
                m.int_format = Some(f);
                // Adjacent integer markers (no literal between) need a fixed width to be
                // parsed apart.
                if let Some(Part::Marker(prev)) = spec.last_mut()
                    && let Some(pf) = &mut prev.int_format
                {
                    pf.parse_width = Some(pf.mandatory);
                }
            }
            if component == 'Z' || component == 'z' {
                m.int_format = Some(analyse_integer_picture(&m.presentation1)?);
            }
            spec.push(Part::Marker(Box::new(m)));
            start = pos + 1;
        }
        pos += 1;
    }
    add_literal(&mut spec, start, pos);
    Ok(spec)
}

const DAYS: [&str; 8] = [
    "",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];
const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

fn start_of_first_week(year: i64, month: i64) -> i64 {
    let jan1 = date_utc(year, month, 1, 0, 0, 0, 0);
    let mut dow = date(jan1).weekday;
    if dow == 0 {
        dow = 7;
    }
    if dow > 4 {
        jan1 + (8 - dow) * MILLIS_PER_DAY
    } else {
        jan1 - (dow - 1) * MILLIS_PER_DAY
    }
}

fn delta_weeks(start: i64, end: i64) -> f64 {
    (end - start) as f64 / (MILLIS_PER_DAY * 7) as f64 + 1.0
}

enum Frag {
    Num(i64),
    Str(&'static str),
    None,
}

fn fragment(d: &Date, c: char) -> Frag {
    Frag::Num(match c {
        'Y' => d.year,
        'M' => d.month + 1,
        'D' => d.day,
        'd' => {
            let today = date_utc(d.year, d.month, d.day, 0, 0, 0, 0);
            let jan1 = date_utc(d.year, 0, 1, 0, 0, 0, 0);
            (today - jan1) / MILLIS_PER_DAY + 1
        }
        'F' => {
            if d.weekday == 0 {
                7
            } else {
                d.weekday
            }
        }
        'W' => {
            let start = start_of_first_week(d.year, 0);
            let today = date_utc(d.year, d.month, d.day, 0, 0, 0, 0);
            let mut week = delta_weeks(start, today);
            if week > 52.0 {
                if today >= start_of_first_week(d.year + 1, 0) {
                    week = 1.0;
                }
            } else if week < 1.0 {
                week = delta_weeks(start_of_first_week(d.year - 1, 0), today);
            }
            week.floor() as i64
        }
        'w' => {
            let start = start_of_first_week(d.year, d.month);
            let today = date_utc(d.year, d.month, d.day, 0, 0, 0, 0);
            let mut week = delta_weeks(start, today);
            let (ny, nm) = if d.month == 11 {
                (d.year + 1, 0)
            } else {
                (d.year, d.month + 1)
            };
            let (py, pm) = if d.month == 0 {
                (d.year - 1, 11)
            } else {
                (d.year, d.month - 1)
            };
            if week > 4.0 {
                if today >= start_of_first_week(ny, nm) {
                    week = 1.0;
                }
            } else if week < 1.0 {
                week = delta_weeks(start_of_first_week(py, pm), today);
            }
            week.floor() as i64
        }
        'X' => {
            let start = start_of_first_week(d.year, 0);
            let end = start_of_first_week(d.year + 1, 0);
            if d.millis < start {
                d.year - 1
            } else if d.millis >= end {
                d.year + 1
            } else {
                d.year
            }
        }
        'x' => {
            let start = start_of_first_week(d.year, d.month);
            let (ny, nm) = if d.month == 11 {
                (d.year + 1, 0)
            } else {
                (d.year, d.month + 1)
            };
            let end = start_of_first_week(ny, nm);
            if d.millis < start {
                (if d.month == 0 { 11 } else { d.month - 1 }) + 1
            } else if d.millis >= end {
                nm + 1
            } else {
                d.month + 1
            }
        }
        'H' => d.hours,
        'h' => {
            let h = d.hours % 12;
            if h == 0 { 12 } else { h }
        }
        'P' => return Frag::Str(if d.hours >= 12 { "pm" } else { "am" }),
        'm' => d.minutes,
        's' => d.seconds,
        'f' => d.ms,
        'C' | 'E' => return Frag::Str("ISO"),
        _ => return Frag::None,
    })
}

fn format_date_time(millis: i64, picture: Option<&str>, tz: Option<&str>) -> Result<String> {
    let (mut oh, mut om) = (0i64, 0i64);
    if let Some(tz) = tz {
        let digits: String = tz
            .trim()
            .chars()
            .enumerate()
            .take_while(|(i, c)| c.is_ascii_digit() || (*i == 0 && (*c == '+' || *c == '-')))
            .map(|(_, c)| c)
            .collect();
        let off: i64 = digits.parse().unwrap_or(0);
        // Math.floor for hours, JavaScript's truncating `%` for minutes.
        oh = (off as f64 / 100.0).floor() as i64;
        om = off % 100;
    }
    let spec = analyse_date_time_picture(
        picture.unwrap_or("[Y0001]-[M01]-[D01]T[H01]:[m01]:[s01].[f001][Z01:01t]"),
    )?;
    let offset_ms = (60 * oh + om) * 60_000;
    let d = date(millis + offset_ms);
    let mut out = String::new();
    for part in &spec {
        match part {
            Part::Literal(l) => out.push_str(l),
            Part::Marker(m) => out.push_str(&format_component(&d, m, oh, om)?),
        }
    }
    Ok(out)
}

fn format_component(d: &Date, m: &Marker, oh: i64, om: i64) -> Result<String> {
    let c = m.component;
    let frag = fragment(d, c);
    if "YMDdFWwXxHhms".contains(c) {
        let Frag::Num(mut v) = frag else {
            return Ok(String::new());
        };
        if c == 'Y' && m.n != -1 {
            v %= 10i64.pow(m.n.clamp(0, 18) as u32);
        }
        if let Some(names) = m.names {
            let name = match c {
                'M' | 'x' => MONTHS[(v - 1).clamp(0, 11) as usize],
                'F' => DAYS[v.clamp(0, 7) as usize],
                _ => return Err(err_val("D3133", &c.to_string())),
            };
            let mut s = match names {
                Case::Upper => name.to_uppercase(),
                Case::Lower => name.to_lowercase(),
                Case::Title => name.to_string(),
            };
            if let Some(max) = m.width_max
                && s.chars().count() > max
            {
                s = s.chars().take(max).collect();
            }
            return Ok(s);
        }
        let f = m
            .int_format
            .as_ref()
            .ok_or_else(|| err_val("D3132", &c.to_string()))?;
        return format_int(v, f);
    }
    match c {
        'f' => {
            let Frag::Num(v) = frag else {
                return Ok(String::new());
            };
            let f = m.int_format.as_ref().ok_or_else(|| err_val("D3132", "f"))?;
            format_int(v, f)
        }
        'Z' | 'z' => {
            let offset = oh * 100 + om;
            let f = m.int_format.as_ref().ok_or_else(|| err_val("D3132", "Z"))?;
            let mut s = if f.regular.is_some() {
                format_int(offset, f)?
            } else {
                match f.mandatory {
                    1 | 2 => {
                        let mut s = format_int(oh, f)?;
                        if om != 0 {
                            s.push(':');
                            s.push_str(&format!("{:02}", om.abs()));
                        }
                        s
                    }
                    3 | 4 => format_int(offset, f)?,
                    n => return Err(err_val("D3134", &n.to_string())),
                }
            };
            if offset >= 0 {
                s.insert(0, '+');
            }
            if c == 'z' {
                s.insert_str(0, "GMT");
            }
            if offset == 0 && m.presentation2 == Some('t') {
                s = "Z".into();
            }
            Ok(s)
        }
        'P' => {
            let Frag::Str(s) = frag else {
                return Ok(String::new());
            };
            Ok(if m.names == Some(Case::Upper) {
                s.to_uppercase()
            } else {
                s.to_string()
            })
        }
        _ => Ok(match frag {
            Frag::Str(s) => s.to_string(),
            Frag::Num(n) => js_number_string(n as f64),
            Frag::None => String::new(),
        }),
    }
}

enum Parser {
    None,
    Fraction,
    Int(IntFormat),
    Tz { z: bool, sep: Option<char> },
    Names(Vec<(String, i64)>),
}

fn int_regex(f: &IntFormat) -> Result<String> {
    let occurrences = match f.parse_width {
        Some(w) => format!("{{{w}}}"),
        None => "+".to_string(),
    };
    Ok(match f.primary {
        Primary::Letters => if f.case == Case::Upper {
            "[A-Z]+"
        } else {
            "[a-z]+"
        }
        .to_string(),
        Primary::Roman => if f.case == Case::Upper {
            "[MDCLXVI]+"
        } else {
            "[mdclxvi]+"
        }
        .to_string(),
        Primary::Words => {
            let mut words: Vec<String> = vec![];
            for w in FEW.iter().chain(ORDINALS.iter()) {
                words.push(w.to_lowercase());
            }
            for w in DECADES {
                let lw = w.to_lowercase();
                words.push(format!("{}ieth", &lw[..lw.len() - 1]));
                words.push(lw);
            }
            words.push("hundredth".into());
            for w in MAGNITUDES {
                let lw = w.to_lowercase();
                words.push(format!("{lw}th"));
                words.push(lw);
            }
            words.sort_by_key(|w| std::cmp::Reverse(w.len()));
            format!("(?:{}|and|[\\-, ])+", words.join("|"))
        }
        Primary::Decimal => {
            let mut r = format!("[0-9]{occurrences}");
            if f.ordinal {
                r.push_str("(?:th|st|nd|rd)");
            }
            r
        }
        Primary::Sequence => return Err(err_val("D3130", &f.token)),
    })
}

fn parse_date_time(ts: &str, picture: &str, now: i64) -> Result<Option<i64>> {
    let spec = analyse_date_time_picture(picture)?;
    let mut regex = String::from("(?i)^");
    let mut parsers: Vec<(char, Parser)> = vec![];
    for part in &spec {
        match part {
            Part::Literal(l) => {
                regex.push('(');
                regex.push_str(&regex::escape(l));
                regex.push(')');
                parsers.push((' ', Parser::None));
            }
            Part::Marker(m) => {
                let c = m.component;
                if c == 'Z' || c == 'z' {
                    let sep = m
                        .int_format
                        .as_ref()
                        .and_then(|f| f.regular.as_ref().map(|r| r.character));
                    let mut r = String::new();
                    if c == 'z' {
                        r.push_str("GMT");
                    }
                    r.push_str("[-+][0-9]+");
                    if let Some(s) = sep {
                        r.push_str(&regex::escape(&s.to_string()));
                        r.push_str("[0-9]+");
                    }
                    regex.push_str(&format!("({r})"));
                    parsers.push((c, Parser::Tz { z: c == 'z', sep }));
                } else if c == 'f' {
                    regex.push_str("([0-9]+)");
                    parsers.push((c, Parser::Fraction));
                } else if let Some(f) = &m.int_format {
                    regex.push_str(&format!("({})", int_regex(f)?));
                    parsers.push((c, Parser::Int(f.clone())));
                } else {
                    let mut lookup = vec![];
                    match c {
                        'M' | 'x' => {
                            for (i, name) in MONTHS.iter().enumerate() {
                                let n: String = match m.width_max {
                                    Some(w) => name.chars().take(w).collect(),
                                    None => name.to_string(),
                                };
                                lookup.push((n, i as i64 + 1));
                            }
                        }
                        'F' => {
                            for (i, name) in DAYS.iter().enumerate().skip(1) {
                                let n: String = match m.width_max {
                                    Some(w) => name.chars().take(w).collect(),
                                    None => name.to_string(),
                                };
                                lookup.push((n, i as i64));
                            }
                        }
                        'P' => {
                            lookup = vec![("am".into(), 0), ("pm".into(), 1)];
                        }
                        _ => return Err(err_val("D3133", &c.to_string())),
                    }
                    regex.push_str("([a-zA-Z]+)");
                    parsers.push((c, Parser::Names(lookup)));
                }
            }
        }
    }
    regex.push('$');
    let re = Regex::new(&regex).map_err(|e| err_val("D3136", &e.to_string()))?;
    let Some(caps) = re.captures(ts) else {
        return Ok(None);
    };
    let mut comps: std::collections::HashMap<char, i64> = std::collections::HashMap::new();
    for (i, (c, p)) in parsers.iter().enumerate() {
        let Some(text) = caps.get(i + 1).map(|m| m.as_str()) else {
            continue;
        };
        let v = match p {
            Parser::None => continue,
            // Fractional seconds: the digits after the point, truncated to milliseconds.
            Parser::Fraction => {
                let d: String = text.chars().take(3).collect();
                format!("0.{d}")
                    .parse::<f64>()
                    .ok()
                    .map(|f| (f * 1000.0).round() as i64)
            }
            Parser::Int(f) => parse_int_with(f, text)?.map(|n| n as i64),
            Parser::Names(l) => l
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(text))
                .map(|(_, v)| *v),
            Parser::Tz { z, sep } => {
                let v = if *z { &text[3..] } else { text };
                let (h, m) = match sep {
                    Some(s) => {
                        let i = v.find(*s).unwrap_or(v.len());
                        (
                            v[..i].parse::<i64>().unwrap_or(0),
                            v.get(i + 1..)
                                .and_then(|x| x.parse::<i64>().ok())
                                .unwrap_or(0),
                        )
                    }
                    None => {
                        if v.len() - 1 <= 2 {
                            (v.parse::<i64>().unwrap_or(0), 0)
                        } else {
                            (
                                v[..3].parse::<i64>().unwrap_or(0),
                                v[3..].parse::<i64>().unwrap_or(0),
                            )
                        }
                    }
                };
                Some(h * 60 + m)
            }
        };
        if let Some(v) = v {
            comps.insert(*c, v);
        }
    }
    if comps.is_empty() {
        return Ok(None);
    }
    let mask_of = |parts: &str| -> u32 {
        let mut mask = 0;
        for p in parts.chars() {
            mask <<= 1;
            if comps.contains_key(&p) {
                mask += 1;
            }
        }
        mask
    };
    let is_type = |t: u32, mask: u32| (!t & mask) == 0 && (t & mask) != 0;
    let dmask = mask_of("YXMxWwdD");
    let date_a = is_type(161, dmask);
    let date_b = !date_a && is_type(130, dmask);
    let date_c = is_type(84, dmask);
    let date_d = !date_c && is_type(72, dmask);
    let tmask = mask_of("PHhmsf");
    let time_a = is_type(23, tmask);
    let time_b = !time_a && is_type(47, tmask);
    let date_comps = if date_b {
        "YD"
    } else if date_c {
        "XxwF"
    } else if date_d {
        "XWF"
    } else {
        "YMD"
    };
    let time_comps = if time_b { "Phmsf" } else { "Hmsf" };
    let now_d = date(now);
    let mut start_specified = false;
    let mut end_specified = false;
    for p in format!("{date_comps}{time_comps}").chars() {
        if let std::collections::hash_map::Entry::Vacant(e) = comps.entry(p) {
            if start_specified {
                e.insert(if "MDd".contains(p) { 1 } else { 0 });
                end_specified = true;
            } else {
                let v = match fragment(&now_d, p) {
                    Frag::Num(n) => n,
                    Frag::Str(s) => i64::from(s == "pm"),
                    Frag::None => 0,
                };
                e.insert(v);
            }
        } else {
            start_specified = true;
            if end_specified {
                return Err(err("D3136"));
            }
        }
    }
    let g = |c: char| comps.get(&c).copied().unwrap_or(0);
    let mut month = if g('M') > 0 { g('M') - 1 } else { 0 };
    let mut day = g('D');
    if date_b {
        let jan1 = date_utc(g('Y'), 0, 1, 0, 0, 0, 0);
        let derived = date(jan1 + (g('d') - 1) * MILLIS_PER_DAY);
        month = derived.month;
        day = derived.day;
    }
    if date_c || date_d {
        return Err(err("D3136"));
    }
    let mut hour = g('H');
    if time_b {
        hour = if g('h') == 12 { 0 } else { g('h') };
        if g('P') == 1 {
            hour += 12;
        }
    }
    let mut millis = date_utc(g('Y'), month, day, hour, g('m'), g('s'), g('f'));
    let tz = comps.get(&'Z').or(comps.get(&'z')).copied().unwrap_or(0);
    millis -= tz * 60_000;
    Ok(Some(millis))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_conversions_round_trip() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(civil_from_days(days_from_civil(2000, 2, 29)), (2000, 2, 29));
        assert_eq!(
            date_utc(2017, 12, 1, 0, 0, 0, 0),
            date_utc(2018, 0, 1, 0, 0, 0, 0)
        );
    }

    #[test]
    fn iso_default_picture() {
        assert_eq!(
            format_date_time(1510067557121, None, None).unwrap(),
            "2017-11-07T15:12:37.121Z"
        );
        assert_eq!(parse_iso("2017-11-07T15:12:37.121Z"), Some(1510067557121));
    }

    #[test]
    fn integer_pictures() {
        let f = analyse_integer_picture("w").unwrap();
        assert_eq!(format_int(123, &f).unwrap(), "one hundred and twenty-three");
        let f = analyse_integer_picture("#,##0").unwrap();
        assert_eq!(format_int(1234567, &f).unwrap(), "1,234,567");
        let f = analyse_integer_picture("I").unwrap();
        assert_eq!(format_int(1999, &f).unwrap(), "MCMXCIX");
        assert_eq!(words_to_number("one hundred and twenty-three"), Some(123.0));
    }

    #[test]
    fn picture_parsing() {
        let now = 0;
        assert_eq!(
            parse_date_time("2018-02-01", "[Y0001]-[M01]-[D01]", now).unwrap(),
            Some(date_utc(2018, 1, 1, 0, 0, 0, 0))
        );
    }
}
