-- Schools, classroom sites, courses, students, lessons, attendance, slides and live state.
-- Portable SQL: it runs unchanged on SQLite and PostgreSQL. Ids are TEXT, times are BIGINT Unix
-- milliseconds, flags are nullable times. Account ids (teachers, assistants, terminals, heads)
-- are the web crate's user ids; they are not foreign keys, so this crate migrates on its own.

CREATE TABLE schools (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    time_zone  TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

-- `position` keeps the order the heads were given in.
CREATE TABLE school_heads (
    school_id TEXT NOT NULL REFERENCES schools (id) ON DELETE CASCADE,
    user_id   TEXT NOT NULL,
    position  BIGINT NOT NULL,
    PRIMARY KEY (school_id, user_id)
);

-- A terminal's device account joins for one site only; NULLs (no terminal yet) do not collide.
CREATE TABLE sites (
    id             TEXT PRIMARY KEY,
    school_id      TEXT NOT NULL REFERENCES schools (id),
    name           TEXT NOT NULL,
    device_user_id TEXT UNIQUE,
    created_at     BIGINT NOT NULL
);

CREATE INDEX sites_by_school ON sites (school_id);

CREATE TABLE site_assistants (
    site_id  TEXT NOT NULL REFERENCES sites (id) ON DELETE CASCADE,
    user_id  TEXT NOT NULL,
    position BIGINT NOT NULL,
    PRIMARY KEY (site_id, user_id)
);

CREATE INDEX site_assistants_by_user ON site_assistants (user_id);

CREATE TABLE courses (
    id         TEXT PRIMARY KEY,
    school_id  TEXT NOT NULL REFERENCES schools (id),
    title      TEXT NOT NULL,
    teacher_id TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE INDEX courses_by_school ON courses (school_id);
CREATE INDEX courses_by_teacher ON courses (teacher_id);

CREATE TABLE students (
    id         TEXT PRIMARY KEY,
    school_id  TEXT NOT NULL REFERENCES schools (id),
    name       TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE INDEX students_by_school ON students (school_id);

CREATE TABLE enrollments (
    course_id  TEXT NOT NULL REFERENCES courses (id) ON DELETE CASCADE,
    student_id TEXT NOT NULL REFERENCES students (id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (course_id, student_id)
);

CREATE INDEX enrollments_by_student ON enrollments (student_id);

-- A student's personal link is stored by the SHA-256 of its secret; the secret is shown once.
CREATE TABLE student_links (
    id          TEXT PRIMARY KEY,
    secret_hash TEXT NOT NULL UNIQUE,
    student_id  TEXT NOT NULL REFERENCES students (id) ON DELETE CASCADE,
    course_id   TEXT NOT NULL REFERENCES courses (id) ON DELETE CASCADE,
    created_at  BIGINT NOT NULL,
    revoked_at  BIGINT
);

CREATE INDEX student_links_by_course ON student_links (course_id, student_id);

CREATE TABLE lessons (
    id           TEXT PRIMARY KEY,
    course_id    TEXT NOT NULL REFERENCES courses (id),
    teacher_id   TEXT NOT NULL,
    title        TEXT NOT NULL,
    starts_at    BIGINT NOT NULL,
    duration_min BIGINT NOT NULL,
    series_id    TEXT,
    rrule        TEXT,
    ended_at     BIGINT,
    cancelled_at BIGINT,
    created_at   BIGINT NOT NULL
);

CREATE INDEX lessons_by_course ON lessons (course_id, starts_at);
CREATE INDEX lessons_by_teacher ON lessons (teacher_id, starts_at);
CREATE INDEX lessons_by_start ON lessons (starts_at);
CREATE INDEX lessons_by_series ON lessons (series_id);

CREATE TABLE lesson_sites (
    lesson_id TEXT NOT NULL REFERENCES lessons (id) ON DELETE CASCADE,
    site_id   TEXT NOT NULL REFERENCES sites (id),
    position  BIGINT NOT NULL,
    PRIMARY KEY (lesson_id, site_id)
);

CREATE INDEX lesson_sites_by_site ON lesson_sites (site_id);

-- The attendance log. `seq` is assigned by the server, increasing, and orders events that share
-- a millisecond: SERIAL and AUTOINCREMENT are not portable.
CREATE TABLE attendance_events (
    id            TEXT PRIMARY KEY,
    lesson_id     TEXT NOT NULL REFERENCES lessons (id) ON DELETE CASCADE,
    attendee_kind TEXT NOT NULL,
    attendee_id   TEXT NOT NULL,
    kind          TEXT NOT NULL,
    detail        TEXT,
    occurred_at   BIGINT NOT NULL,
    seq           BIGINT NOT NULL
);

CREATE INDEX attendance_events_by_lesson ON attendance_events (lesson_id, occurred_at, seq);

CREATE TABLE headcounts (
    lesson_id  TEXT NOT NULL REFERENCES lessons (id) ON DELETE CASCADE,
    site_id    TEXT NOT NULL REFERENCES sites (id),
    pupils     BIGINT NOT NULL,
    entered_by TEXT NOT NULL,
    entered_at BIGINT NOT NULL,
    PRIMARY KEY (lesson_id, site_id)
);

-- `pages` is a JSON array of {hash, width, height, bytes}.
CREATE TABLE decks (
    id         TEXT PRIMARY KEY,
    lesson_id  TEXT NOT NULL REFERENCES lessons (id) ON DELETE CASCADE,
    title      TEXT NOT NULL,
    pages      TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE INDEX decks_by_lesson ON decks (lesson_id);

-- A running lesson's shared state as JSON, rewritten on every change.
CREATE TABLE lesson_live (
    lesson_id  TEXT PRIMARY KEY REFERENCES lessons (id) ON DELETE CASCADE,
    state      TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
