//! What encryption at rest costs: unlocking (Argon2id at the browser's parameters) and sealing /
//! opening records of typical sizes. `cargo bench -p sotto-vault`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use criterion::{criterion_group, criterion_main, Criterion};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng as _;
use sotto_vault::{KdfParams, Vault};

fn bench(c: &mut Criterion) {
    let mut rng = ChaCha20Rng::from_seed([1; 32]);
    let (vault, wrapped) =
        Vault::create(b"correct horse battery", KdfParams::BROWSER, &mut rng).unwrap();
    let mut group = c.benchmark_group("vault");
    group.sample_size(10);
    group.bench_function("unlock (Argon2id 19 MiB, t=2, p=1)", |b| {
        b.iter(|| Vault::unlock(b"correct horse battery", &wrapped).unwrap())
    });
    for size in [1024usize, 256 * 1024] {
        let body = vec![7u8; size];
        let sealed = vault.seal("r", &body, &mut rng).unwrap();
        group.bench_function(format!("seal {} KiB", size / 1024), |b| {
            b.iter(|| vault.seal("r", &body, &mut rng).unwrap())
        });
        group.bench_function(format!("open {} KiB", size / 1024), |b| {
            b.iter(|| vault.open("r", &sealed).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
