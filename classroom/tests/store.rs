//! The classroom store on SQLite and PostgreSQL: the same portable SQL must behave the same.

use tongxin_classroom::model::{
    AttendanceEvent, Attendee, Course, Deck, EventKind, Headcount, Lesson, LiveState, Millis, School, Site, SlidePage, Student,
    StudentLink, new_id,
};
use tongxin_classroom::store::{ClassroomStore, LessonFilter, MIGRATIONS_TABLE, StoreError, migrator};
use tongxin_common::testing::TestDb;

/// 2026-12-01T01:00:00Z (09:00 in Shanghai), a Tuesday.
const T0: Millis = 1_796_086_800_000;
const WEEK: Millis = 7 * 24 * 3_600_000;

/// A migrated store over each backend, with the backend's name for messages.
async fn stores() -> Vec<(TestDb, ClassroomStore, String)> {
    let mut out = Vec::new();
    for test_db in TestDb::each().await {
        test_db.db.migrate(migrator(), MIGRATIONS_TABLE).await.unwrap();
        test_db.db.migrate(migrator(), MIGRATIONS_TABLE).await.expect("migrating twice is a no-op");
        let store = ClassroomStore::new(test_db.db.clone());
        let backend = format!("{:?}", test_db.backend());
        out.push((test_db, store, backend));
    }
    out
}

fn school(id: &str) -> School {
    School {
        id: id.into(),
        name: "Chengdu No. 7 Primary".into(),
        time_zone: "Asia/Shanghai".into(),
        head_user_ids: vec!["usr_head2".into(), "usr_head1".into()],
        created_at: T0 - 10 * WEEK,
    }
}

fn site(id: &str, school_id: &str, device: Option<&str>, assistants: &[&str]) -> Site {
    Site {
        id: id.into(),
        school_id: school_id.into(),
        name: format!("Lianghe village school {id}"),
        device_user_id: device.map(Into::into),
        assistant_user_ids: assistants.iter().map(|&a| a.into()).collect(),
        created_at: T0 - 9 * WEEK,
    }
}

fn course(id: &str, school_id: &str, teacher: &str) -> Course {
    Course {
        id: id.into(),
        school_id: school_id.into(),
        title: "Mathematics, grade 4".into(),
        teacher_id: teacher.into(),
        created_at: T0 - 8 * WEEK,
    }
}

fn student(id: &str, school_id: &str, at: Millis) -> Student {
    Student { id: id.into(), school_id: school_id.into(), name: format!("学生 {id}"), created_at: at }
}

fn lesson(id: &str, course_id: &str, teacher: &str, starts_at: Millis, sites: &[&str]) -> Lesson {
    Lesson {
        id: id.into(),
        course_id: course_id.into(),
        teacher_id: teacher.into(),
        title: format!("Fractions {id}"),
        starts_at,
        duration_min: 45,
        site_ids: sites.iter().map(|&s| s.into()).collect(),
        series_id: None,
        rrule: None,
        ended_at: None,
        cancelled_at: None,
        created_at: T0 - WEEK,
    }
}

/// One school with two sites, a course, and a lesson both sites join.
async fn seed(store: &ClassroomStore) -> Lesson {
    store.create_school(&school("sch1")).await.unwrap();
    store.create_site(&site("siteA", "sch1", Some("usr_devA"), &["usr_asst1"])).await.unwrap();
    store.create_site(&site("siteB", "sch1", Some("usr_devB"), &[])).await.unwrap();
    store.create_course(&course("crs1", "sch1", "usr_teacher")).await.unwrap();
    let l = lesson("les1", "crs1", "usr_teacher", T0, &["siteB", "siteA"]);
    store.create_lessons(std::slice::from_ref(&l)).await.unwrap();
    l
}

#[tokio::test]
async fn schools_and_sites_round_trip() {
    for (_db, store, backend) in stores().await {
        let s = school("sch1");
        store.create_school(&s).await.unwrap();
        assert_eq!(store.school("sch1").await.unwrap(), Some(s.clone()), "{backend}: heads keep their order");
        assert_eq!(store.school("nope").await.unwrap(), None);
        assert!(matches!(store.create_school(&s).await, Err(StoreError::Conflict(_))), "{backend}: same id twice");

        let changed =
            School { name: "Chengdu No. 8".into(), time_zone: "Asia/Urumqi".into(), head_user_ids: vec!["usr_head3".into()], ..s };
        assert!(store.update_school(&changed).await.unwrap());
        assert!(!store.update_school(&school("nope")).await.unwrap());
        let other = School { created_at: T0, head_user_ids: vec![], ..school("sch2") };
        store.create_school(&other).await.unwrap();
        assert_eq!(store.list_schools().await.unwrap(), [changed, other.clone()], "{backend}");

        let a = site("siteA", "sch1", Some("usr_devA"), &["usr_asst2", "usr_asst1"]);
        let b = site("siteB", "sch2", None, &["usr_asst1"]);
        let c = Site { created_at: T0, ..site("siteC", "sch1", None, &[]) };
        for s in [&a, &b, &c] {
            store.create_site(s).await.unwrap();
        }
        assert_eq!(store.site("siteA").await.unwrap().as_ref(), Some(&a), "{backend}");
        assert_eq!(store.list_sites(None).await.unwrap(), [a.clone(), b.clone(), c.clone()], "{backend}");
        assert_eq!(store.list_sites(Some("sch1")).await.unwrap(), [a.clone(), c.clone()], "{backend}");
        assert_eq!(store.site_for_device("usr_devA").await.unwrap().as_ref(), Some(&a));
        assert_eq!(store.site_for_device("usr_devZ").await.unwrap(), None);
        assert_eq!(store.sites_for_assistant("usr_asst1").await.unwrap(), [a.clone(), b.clone()], "{backend}");
        assert!(store.sites_for_assistant("usr_nobody").await.unwrap().is_empty());

        let moved = Site { name: "Grade 5".into(), device_user_id: None, assistant_user_ids: vec!["usr_asst3".into()], ..a.clone() };
        assert!(store.update_site(&moved).await.unwrap());
        assert!(!store.update_site(&site("nope", "sch1", None, &[])).await.unwrap());
        assert_eq!(store.site("siteA").await.unwrap(), Some(moved));
        assert_eq!(store.site_for_device("usr_devA").await.unwrap(), None, "{backend}: the terminal was released");
        assert!(store.sites_for_assistant("usr_asst2").await.unwrap().is_empty());

        let orphan = site("siteD", "no-such-school", None, &[]);
        assert!(matches!(store.create_site(&orphan).await, Err(StoreError::Conflict(_))), "{backend}: a site needs its school");
    }
}

#[tokio::test]
async fn a_terminal_serves_one_site_only() {
    for (_db, store, backend) in stores().await {
        store.create_school(&school("sch1")).await.unwrap();
        store.create_site(&site("siteA", "sch1", Some("usr_dev"), &["usr_asst"])).await.unwrap();
        let second = site("siteB", "sch1", Some("usr_dev"), &["usr_asst"]);
        assert!(matches!(store.create_site(&second).await, Err(StoreError::Conflict(_))), "{backend}");
        assert_eq!(store.site("siteB").await.unwrap(), None, "{backend}: nothing of the refused site remains");
        assert_eq!(store.sites_for_assistant("usr_asst").await.unwrap().len(), 1);

        // Through an update too; and sites without a terminal never collide.
        store.create_site(&site("siteB", "sch1", None, &[])).await.unwrap();
        store.create_site(&site("siteC", "sch1", None, &[])).await.unwrap();
        let taken = site("siteB", "sch1", Some("usr_dev"), &[]);
        assert!(matches!(store.update_site(&taken).await, Err(StoreError::Conflict(_))), "{backend}");
        assert_eq!(store.site_for_device("usr_dev").await.unwrap().map(|s| s.id), Some("siteA".into()));
    }
}

#[tokio::test]
async fn courses_students_and_enrolments() {
    for (_db, store, backend) in stores().await {
        store.create_school(&school("sch1")).await.unwrap();
        store.create_school(&school("sch2")).await.unwrap();
        let math = course("crs1", "sch1", "usr_li");
        let art = Course { created_at: T0, ..course("crs2", "sch1", "usr_wang") };
        let music = Course { created_at: T0 + 1, ..course("crs3", "sch2", "usr_li") };
        for c in [&math, &art, &music] {
            store.create_course(c).await.unwrap();
        }
        assert_eq!(store.course("crs1").await.unwrap().as_ref(), Some(&math));
        assert_eq!(store.course("nope").await.unwrap(), None);
        assert_eq!(store.list_courses(None, None).await.unwrap(), [math.clone(), art.clone(), music.clone()], "{backend}");
        assert_eq!(store.list_courses(Some("sch1"), None).await.unwrap(), [math.clone(), art.clone()]);
        assert_eq!(store.list_courses(None, Some("usr_li")).await.unwrap(), [math.clone(), music.clone()]);
        assert_eq!(store.list_courses(Some("sch2"), Some("usr_li")).await.unwrap(), [music]);

        let (s1, s2, s3) = (student("stu1", "sch1", T0), student("stu2", "sch1", T0 + 1), student("stu3", "sch2", T0 + 2));
        for s in [&s1, &s2, &s3] {
            store.create_student(s).await.unwrap();
        }
        assert_eq!(store.student("stu1").await.unwrap().as_ref(), Some(&s1), "{backend}: names survive as UTF-8");
        assert_eq!(store.list_students(None).await.unwrap(), [s1.clone(), s2.clone(), s3.clone()]);
        assert_eq!(store.list_students(Some("sch1")).await.unwrap(), [s1.clone(), s2.clone()]);

        assert!(store.enroll("crs1", "stu2", T0).await.unwrap());
        assert!(store.enroll("crs1", "stu1", T0 + 5).await.unwrap());
        assert!(!store.enroll("crs1", "stu1", T0 + 9).await.unwrap(), "{backend}: enrolling twice is a no-op");
        assert_eq!(store.enrolled("crs1").await.unwrap(), [s2.clone(), s1.clone()], "{backend}: in enrolment order");
        assert!(store.is_enrolled("crs1", "stu1").await.unwrap());
        assert!(!store.is_enrolled("crs2", "stu1").await.unwrap());
        assert!(store.unenroll("crs1", "stu1").await.unwrap());
        assert!(!store.unenroll("crs1", "stu1").await.unwrap());
        assert!(!store.is_enrolled("crs1", "stu1").await.unwrap());
        assert!(matches!(store.enroll("crs1", "nobody", T0).await, Err(StoreError::Conflict(_))), "{backend}: unknown student");
    }
}

#[tokio::test]
async fn a_new_link_revokes_the_previous_one() {
    for (_db, store, backend) in stores().await {
        store.create_school(&school("sch1")).await.unwrap();
        store.create_course(&course("crs1", "sch1", "usr_li")).await.unwrap();
        store.create_course(&course("crs2", "sch1", "usr_li")).await.unwrap();
        store.create_student(&student("stu1", "sch1", T0)).await.unwrap();
        store.create_student(&student("stu2", "sch1", T0)).await.unwrap();

        let first =
            StudentLink { id: "lnk1".into(), student_id: "stu1".into(), course_id: "crs1".into(), created_at: T0, revoked_at: None };
        store.create_link(&first, "hash1").await.unwrap();
        let other_course = StudentLink { id: "lnk2".into(), course_id: "crs2".into(), ..first.clone() };
        store.create_link(&other_course, "hash2").await.unwrap();
        let other_student = StudentLink { id: "lnk3".into(), student_id: "stu2".into(), ..first.clone() };
        store.create_link(&other_student, "hash3").await.unwrap();
        assert_eq!(store.link_by_hash("hash1").await.unwrap().as_ref(), Some(&first), "{backend}");
        assert_eq!(store.link_by_hash("nope").await.unwrap(), None);

        let second = StudentLink { id: "lnk4".into(), created_at: T0 + 60_000, ..first.clone() };
        store.create_link(&second, "hash4").await.unwrap();
        let revoked = StudentLink { revoked_at: Some(T0 + 60_000), ..first.clone() };
        assert_eq!(store.link_by_hash("hash1").await.unwrap(), Some(revoked.clone()), "{backend}: the old link is revoked");
        assert_eq!(store.link_by_hash("hash2").await.unwrap(), Some(other_course), "{backend}: other courses keep theirs");
        assert_eq!(store.link_by_hash("hash3").await.unwrap(), Some(other_student.clone()), "{backend}: other students keep theirs");
        assert_eq!(store.links_for_course("crs1").await.unwrap(), [revoked, other_student, second.clone()], "{backend}");

        let dup = StudentLink { id: "lnk5".into(), ..second.clone() };
        assert!(matches!(store.create_link(&dup, "hash4").await, Err(StoreError::Conflict(_))), "{backend}: secret hashes are unique");
        assert_eq!(store.link_by_hash("hash4").await.unwrap(), Some(second.clone()), "{backend}: the refused link revoked nothing");

        assert!(store.revoke_link("lnk4", T0 + 120_000).await.unwrap());
        assert!(!store.revoke_link("lnk4", T0 + 180_000).await.unwrap(), "revoking twice changes nothing");
        assert!(!store.revoke_link("nope", T0).await.unwrap());
        assert_eq!(store.link_by_hash("hash4").await.unwrap().unwrap().revoked_at, Some(T0 + 120_000));
    }
}

#[tokio::test]
async fn lessons_round_trip_and_filter() {
    for (_db, store, backend) in stores().await {
        let first = seed(&store).await;
        assert_eq!(store.lesson("les1").await.unwrap().as_ref(), Some(&first), "{backend}: sites keep their order");
        assert_eq!(store.lesson("nope").await.unwrap(), None);

        store.create_course(&course("crs2", "sch1", "usr_wang")).await.unwrap();
        let later = lesson("les2", "crs1", "usr_sub", T0 + WEEK, &["siteA"]);
        let art = lesson("les3", "crs2", "usr_wang", T0 + 3_600_000, &["siteB"]);
        let earliest = lesson("les4", "crs2", "usr_wang", T0 - WEEK, &[]);
        store.create_lessons(&[later.clone(), art.clone(), earliest.clone()]).await.unwrap();

        let ids = |lessons: Vec<Lesson>| lessons.into_iter().map(|l| l.id).collect::<Vec<_>>();
        let list = |f: LessonFilter| {
            let store = store.clone();
            async move { ids(store.list_lessons(&f).await.unwrap()) }
        };
        assert_eq!(list(LessonFilter::default()).await, ["les4", "les1", "les3", "les2"], "{backend}: by start");
        assert_eq!(store.list_lessons(&LessonFilter::default()).await.unwrap(), [earliest, first, art, later], "{backend}");
        let by_course = LessonFilter { course_id: Some("crs1".into()), ..Default::default() };
        assert_eq!(list(by_course).await, ["les1", "les2"]);
        let by_site = LessonFilter { site_id: Some("siteA".into()), ..Default::default() };
        assert_eq!(list(by_site).await, ["les1", "les2"], "{backend}");
        let by_teacher = LessonFilter { teacher_id: Some("usr_wang".into()), ..Default::default() };
        assert_eq!(list(by_teacher).await, ["les4", "les3"]);
        let window = LessonFilter { from: Some(T0), to: Some(T0 + WEEK), ..Default::default() };
        assert_eq!(list(window).await, ["les1", "les3"], "{backend}: from is inclusive, to exclusive");
        let combined =
            LessonFilter { site_id: Some("siteB".into()), teacher_id: Some("usr_teacher".into()), from: Some(T0), ..Default::default() };
        assert_eq!(list(combined).await, ["les1"], "{backend}");
        let nothing = LessonFilter { course_id: Some("crs2".into()), site_id: Some("siteA".into()), ..Default::default() };
        assert!(list(nothing).await.is_empty());

        assert!(store.set_lesson_ended("les1", T0 + 2_700_000).await.unwrap());
        assert!(!store.set_lesson_ended("les1", T0 + 9_999_999).await.unwrap(), "{backend}: the first end stands");
        assert_eq!(store.lesson("les1").await.unwrap().unwrap().ended_at, Some(T0 + 2_700_000));
        assert!(!store.cancel_lesson("les1", T0).await.unwrap(), "an ended lesson cannot be cancelled");
        assert!(store.cancel_lesson("les2", T0).await.unwrap());
        assert!(!store.cancel_lesson("les2", T0 + 1).await.unwrap());
        assert!(!store.cancel_lesson("nope", T0).await.unwrap());
        assert_eq!(store.lesson("les2").await.unwrap().unwrap().cancelled_at, Some(T0));
    }
}

#[tokio::test]
async fn a_weekly_series_is_created_in_one_transaction() {
    for (_db, store, backend) in stores().await {
        seed(&store).await;
        let series = new_id();
        let weekly: Vec<Lesson> = (0..8)
            .map(|week| Lesson {
                series_id: Some(series.clone()),
                rrule: Some("FREQ=WEEKLY;COUNT=8".into()),
                ..lesson(&format!("wk{week}"), "crs1", "usr_teacher", T0 + (week + 1) * WEEK, &["siteA", "siteB"])
            })
            .collect();
        store.create_lessons(&weekly).await.unwrap();
        let f = LessonFilter { from: Some(T0 + 1), ..Default::default() };
        assert_eq!(store.list_lessons(&f).await.unwrap(), weekly, "{backend}");

        // One bad occurrence (an unknown site) and none of the series is stored.
        let mut broken: Vec<Lesson> =
            (0..4).map(|week| lesson(&format!("bad{week}"), "crs1", "usr_teacher", T0 + (week + 20) * WEEK, &["siteA"])).collect();
        broken[3].site_ids.push("no-such-site".into());
        assert!(matches!(store.create_lessons(&broken).await, Err(StoreError::Conflict(_))), "{backend}");
        assert_eq!(store.lesson("bad0").await.unwrap(), None, "{backend}: rolled back");
        let f = LessonFilter { from: Some(T0 + 20 * WEEK), ..Default::default() };
        assert!(store.list_lessons(&f).await.unwrap().is_empty(), "{backend}");
    }
}

#[tokio::test]
async fn events_keep_time_then_insertion_order() {
    for (_db, store, backend) in stores().await {
        seed(&store).await;
        let event = |attendee: Attendee, kind: EventKind, detail: Option<&str>, at: Millis| AttendanceEvent {
            lesson_id: "les1".into(),
            attendee,
            kind,
            detail: detail.map(Into::into),
            at,
        };
        let recorded = [
            event(Attendee::Classroom("siteA".into()), EventKind::Left, Some("timeout"), T0 + 5_000),
            event(Attendee::Teacher("usr_teacher".into()), EventKind::Attempt, None, T0),
            // Three at the same millisecond: they must come back in the order recorded.
            event(Attendee::Student("stu9".into()), EventKind::Joined, None, T0 + 1_000),
            event(Attendee::Observer("usr_head1".into()), EventKind::Joined, None, T0 + 1_000),
            event(Attendee::Student("stu9".into()), EventKind::Quality, Some("poor"), T0 + 1_000),
            event(Attendee::Classroom("siteA".into()), EventKind::Joined, None, T0 + 2_000),
        ];
        for e in &recorded {
            store.record_event(e).await.unwrap();
        }
        let expected = [&recorded[1], &recorded[2], &recorded[3], &recorded[4], &recorded[5], &recorded[0]];
        let got = store.events("les1").await.unwrap();
        assert_eq!(got.iter().collect::<Vec<_>>(), expected, "{backend}");
        assert!(store.events("les2").await.unwrap().is_empty());
        let orphan = event(Attendee::Teacher("t".into()), EventKind::Attempt, None, T0);
        let orphan = AttendanceEvent { lesson_id: "no-such-lesson".into(), ..orphan };
        assert!(matches!(store.record_event(&orphan).await, Err(StoreError::Conflict(_))), "{backend}");
    }
}

#[tokio::test]
async fn a_headcount_is_replaced_not_added() {
    for (_db, store, backend) in stores().await {
        seed(&store).await;
        let a =
            Headcount { lesson_id: "les1".into(), site_id: "siteA".into(), pupils: 31, entered_by: "usr_asst1".into(), at: T0 + 60_000 };
        let b = Headcount { site_id: "siteB".into(), pupils: 0, ..a.clone() };
        store.set_headcount(&a).await.unwrap();
        store.set_headcount(&b).await.unwrap();
        let recount = Headcount { pupils: 29, entered_by: "usr_asst2".into(), at: T0 + 600_000, ..a.clone() };
        store.set_headcount(&recount).await.unwrap();
        assert_eq!(store.headcounts("les1").await.unwrap(), [recount, b], "{backend}");
        assert!(store.headcounts("nope").await.unwrap().is_empty());
    }
}

#[tokio::test]
async fn decks_and_live_state_round_trip() {
    for (_db, store, backend) in stores().await {
        seed(&store).await;
        let page = |n: u8| SlidePage { hash: format!("{n:02x}").repeat(32), width: 1280, height: 720, bytes: 50_000 + u32::from(n) };
        let deck =
            Deck { id: "dck1".into(), lesson_id: "les1".into(), title: "分数.pdf".into(), pages: vec![page(1), page(2)], created_at: T0 };
        let empty = Deck { id: "dck2".into(), title: "blank.png".into(), pages: vec![], created_at: T0 + 1, ..deck.clone() };
        store.create_deck(&deck).await.unwrap();
        store.create_deck(&empty).await.unwrap();
        assert_eq!(store.deck("dck1").await.unwrap().as_ref(), Some(&deck), "{backend}");
        assert_eq!(store.deck("nope").await.unwrap(), None);
        assert_eq!(store.decks("les1").await.unwrap(), [deck, empty], "{backend}");

        assert_eq!(store.live("les1").await.unwrap(), None, "{backend}: never ran");
        let state = LiveState { stage: Some("siteA".into()), hands: vec!["siteB".into()], version: 1, ..Default::default() };
        store.save_live("les1", &state, T0).await.unwrap();
        assert_eq!(store.live("les1").await.unwrap().as_ref(), Some(&state));
        let next = LiveState { stage: None, hands: vec![], chat_locked: true, deck_id: Some("dck1".into()), page: 3, version: 2 };
        store.save_live("les1", &next, T0 + 1).await.unwrap();
        assert_eq!(store.live("les1").await.unwrap(), Some(next), "{backend}: the save replaced the state");
    }
}
