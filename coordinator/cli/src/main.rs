// jemalloc: malloc/free were about a third of the coordinator's cycles under glibc's
// allocator, and it made the coordinator 7-14 % faster in loadtest (loadtest/README.md).
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    mapfleet::cli::main()
}
