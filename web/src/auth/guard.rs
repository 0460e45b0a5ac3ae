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
    /// Create and change schools, classroom sites, courses, students, enrolments and lessons,
    /// and see all of them.
    ManageSchools,
    /// See schools and classroom sites.
    ViewSchools,
    /// See courses (teachers: their own).
    ViewCourses,
    /// Make and revoke students' personal lesson links (teachers: for their own courses).
    ManageStudentLinks,
    /// See lessons (teachers: those they teach; terminals and assistants: their sites').
    ViewLessons,
}

impl Policy {
    /// The account roles this policy allows.
    pub fn allowed_roles(self) -> &'static [AccountRole] {
        match self {
            Policy::ManageAccounts => &[AccountRole::Admin],
            Policy::MintAnyJoinToken => &[AccountRole::Admin],
            Policy::ManageStreamKeys => &[AccountRole::Admin, AccountRole::Teacher],
            Policy::ViewRooms => &[AccountRole::Admin],
            Policy::ManageSchools => &[AccountRole::Admin, AccountRole::Organizer],
            Policy::ViewSchools => &[AccountRole::Admin, AccountRole::Organizer, AccountRole::Teacher, AccountRole::Assistant],
            Policy::ViewCourses => &[AccountRole::Admin, AccountRole::Organizer, AccountRole::Teacher],
            Policy::ManageStudentLinks => &[AccountRole::Admin, AccountRole::Organizer, AccountRole::Teacher],
            Policy::ViewLessons => {
                &[AccountRole::Admin, AccountRole::Organizer, AccountRole::Teacher, AccountRole::Assistant, AccountRole::Device]
            }
        }
    }

    fn action(self) -> &'static str {
        match self {
            Policy::ManageAccounts => "manage accounts",
            Policy::MintAnyJoinToken => "mint join tokens for arbitrary rooms",
            Policy::ManageStreamKeys => "manage stream keys",
            Policy::ViewRooms => "view live rooms",
            Policy::ManageSchools => "manage schools, sites, courses, students and lessons",
            Policy::ViewSchools => "view schools and classroom sites",
            Policy::ViewCourses => "view courses",
            Policy::ManageStudentLinks => "manage students' lesson links",
            Policy::ViewLessons => "view lessons",
        }
    }
}

impl CurrentUser {
    /// Whether this user's role is allowed by `policy` (to widen what a handler shows).
    pub fn allows(&self, policy: Policy) -> bool {
        policy.allowed_roles().contains(&self.user.role)
    }

    /// Passes if this user's role is allowed by `policy`, else a 403 naming the action.
    pub fn require(&self, policy: Policy) -> Result<(), ApiError> {
        if self.allows(policy) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!("your role ({}) may not {}", self.user.role, policy.action())))
        }
    }
}
