//! Random expressions (token soup and mutated suite expressions, from a fixed seed) must
//! parse and evaluate to a value or an error: never a panic, never a hang.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::time::{Duration, Instant};

use mapfleet_jsonata::{Environment, Expression};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const TOKENS: &[&str] = &[
    "a",
    "b",
    "c",
    "$",
    "$$",
    "$x",
    "$f",
    "*",
    "**",
    "%",
    ".",
    "[",
    "]",
    "{",
    "}",
    "(",
    ")",
    ",",
    ";",
    ":",
    "?",
    "??",
    "?:",
    "+",
    "-",
    "/",
    "=",
    "!=",
    "<",
    "<=",
    ">",
    ">=",
    "&",
    "and",
    "or",
    "in",
    "..",
    ":=",
    "~>",
    "@",
    "#",
    "^",
    "|",
    "0",
    "1",
    "-1",
    "2.5",
    "1e3",
    "'s'",
    "\"t\"",
    "true",
    "false",
    "null",
    "/a+/",
    "function",
    "$sum",
    "$map",
    "$string",
    "$substring",
    "$fromMillis",
    "$formatNumber",
    "$replace",
    "$split",
    "$sort",
    "$reduce",
    "$keys",
    "$lookup",
    "$spread",
    "$each",
    "$sift",
    "$zip",
    "$match",
    "$formatInteger",
    "$toMillis",
    "$number",
    "$round",
    "$pad",
    "$join",
    "$distinct",
    "$count",
    "$exists",
    "$merge",
];

fn seeds() -> Vec<String> {
    let mut out = vec![];
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/suite/groups");
    let mut groups: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    groups.sort();
    for g in groups {
        let mut files: Vec<_> = std::fs::read_dir(g)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        for f in files
            .iter()
            .filter(|f| f.extension().is_some_and(|e| e == "json"))
        {
            let Ok(v) =
                serde_json::from_str::<serde_json::Value>(&std::fs::read_to_string(f).unwrap())
            else {
                continue;
            };
            let cases = match v {
                serde_json::Value::Array(a) => a,
                c => vec![c],
            };
            for c in cases {
                if let Some(e) = c.get("expr").and_then(|e| e.as_str()) {
                    out.push(e.to_string());
                }
            }
        }
    }
    out
}

fn mutate(rng: &mut Rng, src: &str) -> String {
    let mut chars: Vec<char> = src.chars().collect();
    for _ in 0..1 + rng.below(3) {
        if chars.is_empty() {
            break;
        }
        let i = rng.below(chars.len());
        match rng.below(3) {
            0 => {
                chars.remove(i);
            }
            1 => {
                let t: Vec<char> = TOKENS[rng.below(TOKENS.len())].chars().collect();
                chars.splice(i..i, t);
            }
            _ => {
                let j = rng.below(chars.len());
                chars.swap(i, j);
            }
        }
    }
    chars.into_iter().collect()
}

#[test]
fn random_expressions_never_panic_or_hang() {
    let data = serde_json::json!({
        "a": [{"b": 1, "c": "x"}, {"b": [2, 3], "c": null}],
        "b": {"c": {"a": 1}},
        "c": "2017-11-07T15:07:54.972Z"
    });
    let seeds = seeds();
    // `JSONATA_FUZZ_SEED` / `JSONATA_FUZZ_N` run other or longer sequences.
    let seed = std::env::var("JSONATA_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x9E37_79B9_7F4A_7C15u64);
    let n: usize = std::env::var("JSONATA_FUZZ_N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_000);
    let mut rng = Rng(seed.max(1));
    let started = Instant::now();
    let mut errors = 0;
    for i in 0..n {
        let src = if i % 2 == 0 {
            let len = 1 + rng.below(12);
            (0..len)
                .map(|_| TOKENS[rng.below(TOKENS.len())])
                .collect::<Vec<_>>()
                .join(" ")
        } else {
            let seed = &seeds[rng.below(seeds.len())];
            mutate(&mut rng, seed)
        };
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            let mut env = Environment::new(1_500_000_000_000, 1);
            env.max_steps = Some(200_000);
            env.deadline = Some(Instant::now() + Duration::from_secs(5));
            Expression::parse(&src).and_then(|e| e.evaluate(Some(&data), &mut env))
        }));
        match outcome {
            Ok(Ok(_)) => {}
            Ok(Err(_)) => errors += 1,
            Err(_) => panic!("panicked on expression {src:?}"),
        }
    }
    println!(
        "{n} random expressions, {errors} errors, {:?}",
        started.elapsed()
    );
}
