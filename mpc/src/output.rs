//! Output shares (Protocol 2 step 7): sealed by each node for the receiver with HPKE
//! (`armored-crypto`), opened and combined by the receiver.

use armored_crypto::hpke::{
    open_output_share, seal_output_share, HpkePublicKey, HpkeSecretKey, OutputShareInput,
};
use armored_crypto::sig::{SigningKey, VerifyingKey};
use rand_core::{CryptoRng, RngCore};
use zeroize::{Zeroize, Zeroizing};

use crate::error::{Error, Result};
use crate::field::Fp;
use crate::job::Job;
use crate::shamir::{combine_all, Party};

/// One node's output shares: a uniformly random degree-1 sharing of each output value. Zeroized
/// on drop; `Debug` shows only the party and the count.
#[derive(Clone, PartialEq, Eq)]
pub struct OutputShares {
    party: Party,
    values: Vec<Fp>,
}

impl core::fmt::Debug for OutputShares {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "OutputShares(party {}, {} values, <redacted>)",
            self.party.index(),
            self.values.len()
        )
    }
}

impl Drop for OutputShares {
    fn drop(&mut self) {
        self.values.zeroize();
    }
}

impl OutputShares {
    pub(crate) fn new(party: Party, values: Vec<Fp>) -> Self {
        OutputShares { party, values }
    }

    /// The node that holds these shares.
    pub fn party(&self) -> Party {
        self.party
    }

    /// The shares, in output order.
    pub fn values(&self) -> &[Fp] {
        &self.values
    }

    /// Seals the shares for the receiver's HPKE key and signs them as this node
    /// (`EncryptedOutputShare` inside `Signed`, domain `at/v1/output-share`).
    pub fn seal<R: RngCore + CryptoRng>(
        &self,
        job: &Job,
        receiver: &HpkePublicKey,
        node_key: &SigningKey,
        rng: &mut R,
    ) -> Result<Vec<u8>> {
        let values: Zeroizing<Vec<u64>> =
            Zeroizing::new(self.values.iter().map(|v| v.value()).collect());
        let input = OutputShareInput {
            job_id: &job.job_id,
            job_hash: job.job_hash,
            attempt: job.attempt,
            node_index: u32::from(self.party.index()),
            values: &values,
        };
        Ok(seal_output_share(receiver, node_key, &input, rng)?)
    }
}

/// The receiver: verifies and opens the three sealed output shares of one attempt (node j's signed
/// by `nodes[j-1]`) and combines them, checking that every value's three shares lie on one line.
pub fn open_and_combine(
    receiver: &HpkeSecretKey,
    nodes: [&VerifyingKey; 3],
    job_hash: &[u8; 32],
    attempt: u32,
    sealed: [&[u8]; 3],
) -> Result<Vec<Fp>> {
    let mut shares: [Vec<Fp>; 3] = Default::default();
    for (j, party) in Party::ALL.into_iter().enumerate() {
        let opened = open_output_share(receiver, nodes[j], job_hash, attempt, sealed[j])?;
        if opened.node_index != u32::from(party.index()) {
            return Err(Error::InvalidInput("output share from another node index"));
        }
        shares[j] = opened
            .values
            .iter()
            .map(|&v| {
                Fp::from_canonical(v).ok_or(Error::InvalidInput("non-canonical output share"))
            })
            .collect::<Result<_>>()?;
    }
    let out = combine_all([&shares[0], &shares[1], &shares[2]]);
    for s in &mut shares {
        s.zeroize();
    }
    out
}
