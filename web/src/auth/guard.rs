//! Role guards, in one place: which account roles each protected action allows.
//!
//! Handlers name a [`Policy`]; they never compare roles themselves. Adding an action means
//! adding a policy here, where a reviewer sees every rule at once.

use crate::accounts::AccountRole;
use crate::error::ApiError;

use super::CurrentUser;

/// A protected action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// List, create, change and disable accounts.
    ManageAccounts,
    /// Mint join tokens for any room with any grant.
    MintAnyJoinToken,
    /// Create, list and revoke stream keys (teachers: only for themselves).
    ManageStreamKeys,
    /// See every live room and who is in it.
    ViewRooms,
}

impl Policy {
    /// The account roles this policy allows.
    pub fn allowed_roles(self) -> &'static [AccountRole] {
        match self {
            Policy::ManageAccounts => &[AccountRole::Admin],
            Policy::MintAnyJoinToken => &[AccountRole::Admin],
            Policy::ManageStreamKeys => &[AccountRole::Admin, AccountRole::Teacher],
            Policy::ViewRooms => &[AccountRole::Admin],
        }
    }

    fn action(self) -> &'static str {
        match self {
            Policy::ManageAccounts => "manage accounts",
            Policy::MintAnyJoinToken => "mint join tokens for arbitrary rooms",
            Policy::ManageStreamKeys => "manage stream keys",
            Policy::ViewRooms => "view live rooms",
        }
    }
}

impl CurrentUser {
    /// Passes if this user's role is allowed by `policy`, else a 403 naming the action.
    pub fn require(&self, policy: Policy) -> Result<(), ApiError> {
        if policy.allowed_roles().contains(&self.user.role) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!("your role ({}) may not {}", self.user.role, policy.action())))
        }
    }
}
