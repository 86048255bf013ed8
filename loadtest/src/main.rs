fn main() {
    eprintln!("loadtest: no scenario yet");
}
