//! Keyset pagination shared by every list endpoint: `?limit=N&cursor=ID`,
//! answered with `{ "items": [...], "next_cursor": ID | null }`.
//!
//! Keyset (not offset) pagination keeps pages stable while rows are being
//! inserted, which matters when the facade compares a monolith's page with a
//! service's page of the same list.

use serde::{Deserialize, Serialize};

use crate::ApiError;

/// Items per page when the client does not say.
pub const DEFAULT_LIMIT: i64 = 50;
/// The most items a client may ask for in one page.
pub const MAX_LIMIT: i64 = 200;

/// The raw query parameters of a list request.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageParams {
    /// Items per page, 1 to [`MAX_LIMIT`].
    pub limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<i64>,
}

/// Validated page parameters.
#[derive(Debug, Clone, Copy)]
pub struct PageRequest {
    /// Items per page.
    pub limit: i64,
    /// Where the page starts (exclusive), if not at the beginning.
    pub cursor: Option<i64>,
}

impl PageParams {
    /// Checks the limit's range; a bad value is a 400 naming the parameter.
    pub fn validate(&self) -> Result<PageRequest, ApiError> {
        let limit = self.limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(ApiError::bad_request(format!(
                "limit must be between 1 and {MAX_LIMIT}, got {limit}"
            )));
        }
        Ok(PageRequest {
            limit,
            cursor: self.cursor,
        })
    }
}

/// One page of a list.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct Page<T> {
    /// The items of this page.
    pub items: Vec<T>,
    /// Pass as `cursor` to get the next page; `null` on the last page.
    pub next_cursor: Option<i64>,
}

impl<T> Page<T> {
    /// Builds a page from up to `limit + 1` fetched rows: the extra row only
    /// tells whether another page exists.
    pub fn from_overfetch(mut rows: Vec<T>, request: PageRequest, key: impl Fn(&T) -> i64) -> Self {
        let limit = usize::try_from(request.limit).unwrap_or(usize::MAX);
        let more = rows.len() > limit;
        rows.truncate(limit);
        let next_cursor = if more { rows.last().map(&key) } else { None };
        Self {
            items: rows,
            next_cursor,
        }
    }
}
