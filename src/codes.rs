//! Link ids and generated short codes: counter blocks leased from the database, turned
//! into codes by the keyed permutation in [`crate::domain::code`].
//!
//! A block of [`BLOCK_SIZE`] counter values costs one database write; the values
//! left in a block when the process stops are simply never used (a few thousand out
//! of trillions). One counter ([`LINK_ID_COUNTER`]) numbers every link: a generated
//! link's id is the counter value its code encodes, so stores keep generated links in
//! counter order and find one by decoding its code. An alias is stored under the id
//! its own code decodes to when it can, else under [`ALIAS_IDS`] plus the next value. Codes of different lengths never
//! collide and the counter only grows, so changing `code_length` cannot produce a
//! code already issued.

use crate::domain::code::CodeSpace;
use crate::domain::link::LinkId;
use crate::store::{CODE_KEY_SETTING, LINK_ID_COUNTER, MetaStore, StoreError, code_book};
use std::ops::Range;
use std::sync::Arc;
use tokio::sync::Mutex;

/// Where the ids of aliases stored by the alias index start: above 62^10, the
/// largest value any code of up to 10 characters decodes to, so that such an id is
/// never the id some code decodes to.
pub const ALIAS_IDS: i64 = 1 << 62;

/// Counter values leased per database round trip.
pub const BLOCK_SIZE: u64 = 4096;

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
    block: Mutex<Range<u64>>,
}

impl CodeAllocator {
    /// Loads (or on first use creates) the permutation key and prepares to lease blocks.
    pub async fn new(meta: Arc<dyn MetaStore>, len: u32) -> Result<Self, StoreError> {
        let fresh: [u8; 16] = rand::random();
        let stored = meta.secret(CODE_KEY_SETTING, fresh.to_vec()).await?;
        let space = code_book(&stored)?.space(len).clone();
        Ok(Self {
            space,
            meta,
            block: Mutex::new(0..0),
        })
    }

    /// The next link id and its generated code.
    pub async fn next(&self) -> Result<(LinkId, String), AllocError> {
        let n = self.next_value().await?;
        if n >= self.space.size() {
            return Err(AllocError::Exhausted(self.space.code_len()));
        }
        Ok((LinkId(n as i64), self.space.encode(n)))
    }

    /// An id for a link with a custom alias: [`ALIAS_IDS`] plus the next counter value.
    /// Stores keep it only for an alias they cannot store under the id its code
    /// decodes to (see [`crate::store::LinkStore::insert_link`]); being above every
    /// value a code decodes to, it can never be such an id.
    pub async fn next_id(&self) -> Result<LinkId, AllocError> {
        Ok(LinkId(ALIAS_IDS + self.next_value().await? as i64))
    }

    async fn next_value(&self) -> Result<u64, AllocError> {
        let mut block = self.block.lock().await;
        if block.is_empty() {
            *block = self.meta.lease_block(LINK_ID_COUNTER, BLOCK_SIZE).await?;
        }
        let n = block.start;
        block.start += 1;
        Ok(n)
    }
}
