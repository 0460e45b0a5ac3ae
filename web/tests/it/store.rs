//! The account store on SQLite and PostgreSQL: the same portable SQL must behave the same.

use std::time::Duration;

use tongxin_common::testing::TestDb;
use tongxin_web::accounts::store::{AccountStore, NewUser, StoreError, UserChanges};
use tongxin_web::accounts::{AccountRole, Locale, Username};
use tongxin_web::state::migrate;

use crate::harness::T0;

fn new_user(name: &str, role: AccountRole) -> NewUser {
    NewUser {
        username: Username::parse(name).unwrap(),
        display_name: format!("{name} 名"),
        role,
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA".into(),
        locale: Locale::ZhCn,
    }
}

#[tokio::test]
async fn accounts_and_sessions_on_both_backends() {
    let t0 = std::time::UNIX_EPOCH + T0;
    for test_db in TestDb::each().await {
        let backend = format!("{:?}", test_db.backend());
        migrate(&test_db.db).await.unwrap();
        migrate(&test_db.db).await.expect("migrating twice is a no-op");
        let store = AccountStore::new(test_db.db.clone());

        let a = store.create_user(new_user("alpha", AccountRole::Teacher), t0).await.unwrap();
        let b = store.create_user(new_user("bravo", AccountRole::Device), t0).await.unwrap();
        assert!(matches!(store.create_user(new_user("alpha", AccountRole::Admin), t0).await, Err(StoreError::UsernameTaken)), "{backend}");
        assert_eq!(store.count_users().await.unwrap(), 2);
        assert_eq!(store.user(&a.id).await.unwrap().as_ref(), Some(&a), "{backend}");
        let listed: Vec<_> = store.list_users().await.unwrap().into_iter().map(|u| u.username.to_string()).collect();
        assert_eq!(listed, ["alpha", "bravo"]);
        let (found, hash) = store.credentials(&Username::parse("alpha").unwrap()).await.unwrap().unwrap();
        assert_eq!(found.id, a.id);
        assert!(hash.starts_with("$argon2id$"));
        assert!(store.credentials(&Username::parse("charlie").unwrap()).await.unwrap().is_none());

        // Sessions: live, expired, revoked, and ended by account changes.
        store.create_session(&a.id, "h1", t0, t0 + Duration::from_secs(60)).await.unwrap();
        store.create_session(&a.id, "h2", t0, t0 + Duration::from_secs(600)).await.unwrap();
        store.create_session(&b.id, "h3", t0, t0 + Duration::from_secs(600)).await.unwrap();
        let (u, exp) = store.session_user("h1", t0).await.unwrap().unwrap();
        assert_eq!((u.id.clone(), exp), (a.id.clone(), tongxin_common::unix_millis(t0) + 60_000));
        assert!(store.session_user("h1", t0 + Duration::from_secs(60)).await.unwrap().is_none(), "expired at its end");
        assert_eq!(store.count_live_sessions(t0 + Duration::from_secs(61)).await.unwrap(), 2);
        assert_eq!(store.purge_expired_sessions(t0 + Duration::from_secs(61)).await.unwrap(), 1);
        assert!(store.delete_session("h2").await.unwrap());
        assert!(!store.delete_session("h2").await.unwrap());

        let changed = store
            .update_user(&b.id, UserChanges { disabled: Some(true), locale: Some(Locale::Ug), ..Default::default() }, t0)
            .await
            .unwrap()
            .unwrap();
        assert!(changed.disabled && changed.locale == Locale::Ug, "{backend}: {changed:?}");
        assert!(store.session_user("h3", t0).await.unwrap().is_none(), "{backend}: disabling ends sessions");
        let enabled = store.update_user(&b.id, UserChanges { disabled: Some(false), ..Default::default() }, t0).await.unwrap().unwrap();
        assert!(!enabled.disabled);
        let missing = tongxin_web::accounts::UserId("usr_none".into());
        assert!(store.update_user(&missing, UserChanges::default(), t0).await.unwrap().is_none());
    }
}
