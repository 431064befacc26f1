//! Generated short codes: counter blocks leased from the database, turned into codes
//! by the keyed permutation in [`crate::domain::code`].
//!
//! A block of [`BLOCK_SIZE`] counter values costs one database write; the values
//! left in a block when the process stops are simply never used (a few thousand out
//! of trillions). Each code length has its own counter, so changing `code_length`
//! cannot produce a code already issued.

use crate::domain::code::CodeSpace;
use crate::store::{MetaStore, StoreError};
use std::ops::Range;
use std::sync::Arc;
use tokio::sync::Mutex;

/// Counter values leased per database round trip.
pub const BLOCK_SIZE: u64 = 4096;

/// Name of the permutation key in the settings table.
const KEY_SETTING: &str = "code_permutation_key";

#[derive(Debug, thiserror::Error)]
pub enum AllocError {
    #[error("every {0}-character code has been issued; raise code_length")]
    Exhausted(u32),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Hands out generated codes, unique across restarts and processes sharing a database.
pub struct CodeAllocator {
    space: CodeSpace,
    meta: Arc<dyn MetaStore>,
    counter: String,
    block: Mutex<Range<u64>>,
}

impl CodeAllocator {
    /// Loads (or on first use creates) the permutation key and prepares to lease blocks.
    pub async fn new(meta: Arc<dyn MetaStore>, len: u32) -> Result<Self, StoreError> {
        let fresh: [u8; 16] = rand::random();
        let stored = meta.secret(KEY_SETTING, fresh.to_vec()).await?;
        let key: [u8; 16] = stored
            .as_slice()
            .try_into()
            .map_err(|_| StoreError::Database(format!("setting {KEY_SETTING} is not 16 bytes")))?;
        Ok(Self {
            space: CodeSpace::new(len, key),
            meta,
            counter: format!("codes_len{len}"),
            block: Mutex::new(0..0),
        })
    }

    /// The next unused code.
    pub async fn next(&self) -> Result<String, AllocError> {
        let mut block = self.block.lock().await;
        if block.is_empty() {
            *block = self.meta.lease_block(&self.counter, BLOCK_SIZE).await?;
        }
        let n = block.start;
        if n >= self.space.size() {
            return Err(AllocError::Exhausted(self.space.code_len()));
        }
        block.start += 1;
        Ok(self.space.encode(n))
    }
}
