//! An unversioned call to a rollout's endpoint: pick the arm (sticky by the configured key, else random;
//! or the arm the caller forces), serve it, tell the rollout what it meant, answer with control when the
//! canary could not serve (if configured), and mirror a sample to the shadows once the answer is ready.
//!
//! What a request means for the analysis (the rule, in `Blame` terms):
//! - served: a success, with its latency;
//! - the arm could not serve it (queue full, server deadline, execution error, panic, injected fault): a
//!   failure of that arm; for the canary, control answers instead with `serve_control`;
//! - the canary refuses a request control accepts: the canary's failure (control answers);
//! - a request both refuse is the client's mistake: it counts for neither arm;
//! - past a deadline the client chose: no error, a latency known to be at least that long;
//! - a client that hangs up drops the request before anything is recorded: neither arm.
//!
//! Refusals never enter the latency test, and only the arm the request was assigned to is judged.

use super::run::{self, Decoded};
use super::{Blame, Call, Endpoints, Reply, ServeError, mirror, random};
use crate::pool::JobFault;
use crate::rollout::{Arm, Fault, Observation, RolloutDriver};
use crate::{Priority, Served};
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchyard_core::rollout::assign;
use switchyard_protocol::{InferRequest, Tensor};

type Attempt = (Result<(InferRequest, Vec<Tensor>), ServeError>, Duration);

pub(super) async fn serve(ep: &Endpoints, driver: &Arc<RolloutDriver>, call: Call<'_>) -> Result<Reply, ServeError> {
    let metadata = call.metadata;
    let key = driver.spec.header.as_deref().and_then(|h| metadata.get(h));
    let weight_bp = driver.weight_bp();
    let arm = call.forced.unwrap_or_else(|| driver.choose_at(key, random(), weight_bp));
    // An experiment's outcomes join the arm that answered, by the request's id and assignment key.
    let feedback = ep.feedback.as_ref().filter(|_| call.forced.is_none() && driver.spec.experiment.is_some());
    let reply = serve_arm(ep, driver, call, arm).await?;
    // A request the canary did not answer (not loaded, or failed with control answering) is left out of
    // the experiment: its failure is the rollback tests' business, and its outcome says nothing of it.
    if let Some(f) = feedback.filter(|_| reply.arm == Some(arm)) {
        f.remember(driver, arm, weight_bp, reply.request.id.as_deref(), key, (reply.version, &reply.outputs));
    }
    Ok(reply)
}

async fn serve_arm(ep: &Endpoints, driver: &Arc<RolloutDriver>, call: Call<'_>, arm: Arm) -> Result<Reply, ServeError> {
    // Forced requests are for testing: served, never judged.
    let protocol = call.request.protocol();
    let record = |arm: Arm, o: Observation| {
        if call.forced.is_none() {
            driver.record(arm, protocol, o);
        }
    };
    let shadows = mirror::sample(driver);
    let keep_for_shadows = !shadows.is_empty();
    let mut decoded = Decoded::new(call.request);
    let endpoint = call.model;
    if arm == Arm::Canary
        && let Ok(canary) = ep.lookup_target(driver.target(Arm::Canary))
    {
        // A copy stays for control, which answers when the canary cannot.
        let req = decoded.for_version(&canary, true);
        let (result, took) =
            attempt(ep, &canary, req, driver.spec.faults[1], Priority::Canary, decoded.protocol()).await;
        let e = match result {
            Ok((req, outputs)) => {
                record(Arm::Canary, Observation::Served(took));
                return Ok(finish(ep, driver, endpoint, Arm::Canary, &canary, req, outputs, decoded, shadows));
            }
            Err(e) => e,
        };
        match e.blame() {
            Blame::ClientDeadline => {
                record(Arm::Canary, Observation::Censored(took));
                return Err(e);
            }
            Blame::Arm => {
                record(Arm::Canary, Observation::Failed);
                if !driver.spec.serve_control_on_canary_error {
                    return Err(e);
                }
            }
            Blame::Client => {
                // The client's mistake only if control refuses it too.
                let control = ep.lookup_target(driver.target(Arm::Control))?;
                let req = decoded.for_version(&control, keep_for_shadows);
                if let Err(ce) = &req
                    && ce.blame() == Blame::Client
                {
                    return Err(ce.clone());
                }
                let (result, _) =
                    attempt(ep, &control, req, driver.spec.faults[0], Priority::Control, decoded.protocol()).await;
                if let Err(ce) = &result
                    && ce.blame() == Blame::Client
                {
                    return Err(ce.clone());
                }
                record(Arm::Canary, Observation::Failed);
                if !driver.spec.serve_control_on_canary_error {
                    return Err(e);
                }
                let (req, outputs) = result?;
                return Ok(finish(ep, driver, endpoint, Arm::Control, &control, req, outputs, decoded, shadows));
            }
        }
    }
    let control = ep.lookup_target(driver.target(Arm::Control))?;
    let req = decoded.for_version(&control, keep_for_shadows);
    let (result, took) = attempt(ep, &control, req, driver.spec.faults[0], Priority::Control, decoded.protocol()).await;
    if arm == Arm::Control {
        match &result {
            Ok(_) => record(Arm::Control, Observation::Served(took)),
            Err(e) => match e.blame() {
                Blame::Arm => record(Arm::Control, Observation::Failed),
                Blame::ClientDeadline => record(Arm::Control, Observation::Censored(took)),
                Blame::Client => {}
            },
        }
    }
    let (req, outputs) = result?;
    Ok(finish(ep, driver, endpoint, Arm::Control, &control, req, outputs, decoded, shadows))
}

/// Serves on one arm with its injected faults (for rehearsals): added delay, then a share of failures.
async fn attempt(
    ep: &Endpoints,
    served: &Served,
    req: Result<InferRequest, ServeError>,
    fault: Fault,
    priority: Priority,
    protocol: crate::Protocol,
) -> Attempt {
    let start = Instant::now();
    if !fault.delay.is_zero() {
        tokio::time::sleep(fault.delay).await;
    }
    if fault.error_bp > 0 && assign::random_bucket(random()) < fault.error_bp {
        let arm = if priority == Priority::Canary { "canary" } else { "control" };
        return (Err(ServeError::Injected(arm)), start.elapsed());
    }
    let chosen = |bp: u32| bp > 0 && assign::random_bucket(random()) < bp;
    let job_fault = if chosen(fault.panic_bp) {
        JobFault::Panic
    } else if chosen(fault.crash_bp) {
        JobFault::Crash
    } else {
        JobFault::None
    };
    let (result, _) = run::run_with(served, req, ep.default_timeout, priority, job_fault, protocol).await;
    (result, start.elapsed())
}

/// The reply, tagged with the arm and the version that served it; sampled shadows get their copies.
#[allow(clippy::too_many_arguments)]
fn finish(
    ep: &Endpoints,
    driver: &Arc<RolloutDriver>,
    endpoint: &str,
    arm: Arm,
    served: &Served,
    request: InferRequest,
    outputs: Vec<Tensor>,
    decoded: Decoded,
    shadows: Vec<(usize, tokio::sync::OwnedSemaphorePermit)>,
) -> Reply {
    if !shadows.is_empty() {
        mirror::spawn(ep, driver, shadows, decoded, Arc::new(outputs.clone()));
    }
    // A canary serving all traffic (promoted, or blue-green's switch) captures its drift reference again.
    if arm == Arm::Canary
        && driver.weight_bp() == switchyard_core::rollout::FULL_WEIGHT
        && let Some(d) = served.pool.drift()
    {
        d.rebase_once();
    }
    Reply {
        request,
        outputs,
        name: endpoint.to_owned(),
        version: served.version,
        arm: Some(arm),
        served_by: Some(format!("{}/{}", driver.target(arm).model, served.version)),
        fallback: None,
    }
}
