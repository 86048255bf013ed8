// jemalloc: malloc/free were about a third of the coordinator's cycles under glibc's
// allocator, and it made the coordinator 7-14 % faster in loadtest (loadtest/README.md).
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's built-in options for this binary (read once, before `main`): ask for
/// transparent huge pages on its heap. `mapfleet run` walks large JSON trees and spends a
/// noticeable share of its time on TLB misses; huge pages made it 13-15 % faster
/// (loadtest/README.md, embedded vs aws-local-stepfunctions). The long-lived subcommands
/// (`coordinator`, `serve`, ...) turn huge pages off for the whole process first thing in
/// `main` ([`mapfleet::huge_pages`]), so their resident memory stays as it was. The
/// `_RJEM_MALLOC_CONF` environment variable still overrides this.
#[unsafe(export_name = "_rjem_malloc_conf")]
pub static MALLOC_CONF: &[u8; 11] = b"thp:always\0";

fn main() -> std::process::ExitCode {
    mapfleet::cli::main()
}
