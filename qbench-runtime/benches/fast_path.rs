//! The cost of an update point while no update is pending, next to the cost of calling an empty
//! function that cannot be inlined: the runtime's promise is "within 1 ns of an empty call".

use criterion::{Criterion, criterion_group, criterion_main};

#[inline(never)]
extern "C" fn empty_function() {
    // SAFETY: an empty asm block with no operands: it only keeps the call from being elided.
    unsafe { std::arch::asm!("", options(nomem, nostack, preserves_flags)) };
}

fn fast_path(c: &mut Criterion) {
    let mut group = c.benchmark_group("update_point");
    group.bench_function("empty_call", |b| {
        b.iter(|| {
            for _ in 0..1000 {
                empty_function();
            }
        })
    });
    group.bench_function("qbench_update", |b| {
        b.iter(|| {
            for _ in 0..1000 {
                qbench::update();
            }
        })
    });
    group.finish();
}

criterion_group!(benches, fast_path);
criterion_main!(benches);
