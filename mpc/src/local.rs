//! Three parties in one process, one thread each, over the in-memory transport: for tests,
//! benches and demos (a deployment runs one `run_party` per node).

use crate::error::{Error, Result};
use crate::functions::contact_tracing::{run_party_with, EngineConfig, PartyInputs, PartyOutput};
use crate::job::Job;
use crate::prss::PartySeeds;
use crate::transport::{InMemoryConfig, InMemoryTransport};

/// Runs `f(party's transport, party's seeds)` for the three parties on their own threads and
/// returns their results in party order. When parties fail, the first failure that is not a
/// consequence of another party stopping (a timeout or a closed link) is returned.
pub fn run_three<R, F>(net: InMemoryConfig, seeds: [PartySeeds; 3], f: F) -> Result<[R; 3]>
where
    R: Send,
    F: Fn(InMemoryTransport, PartySeeds) -> Result<R> + Sync,
{
    let transports = InMemoryTransport::network(net);
    let results: Vec<Result<R>> = std::thread::scope(|scope| {
        let handles: Vec<_> = transports
            .into_iter()
            .zip(seeds)
            .map(|(t, s)| {
                let f = &f;
                scope.spawn(move || f(t, s))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or(Err(Error::InvalidInput("a party thread panicked")))
            })
            .collect()
    });
    let mut ok = Vec::with_capacity(3);
    let mut first_err: Option<Error> = None;
    for r in results {
        match r {
            Ok(v) => ok.push(v),
            Err(e) => {
                let secondary = matches!(e, Error::Timeout { .. } | Error::Transport { .. });
                match &first_err {
                    Some(prev)
                        if secondary
                            || !matches!(prev, Error::Timeout { .. } | Error::Transport { .. }) => {
                    }
                    _ => first_err = Some(e),
                }
            }
        }
    }
    if let Some(e) = first_err {
        return Err(e);
    }
    ok.try_into()
        .map_err(|_| Error::InvalidInput("three results expected"))
}

/// Contact tracing with all three parties in this process.
pub fn contact_tracing(
    config: &EngineConfig,
    net: InMemoryConfig,
    job: &Job,
    inputs: &[PartyInputs; 3],
    seeds: [PartySeeds; 3],
) -> Result<[PartyOutput; 3]> {
    run_three(net, seeds, |transport, seeds| {
        let party = seeds.party();
        run_party_with(config, party, job, &inputs[party.slot()], &seeds, transport)
    })
}
