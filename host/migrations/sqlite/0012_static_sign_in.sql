-- Static-link sign-in (panels whose links are fixed URLs per account): off
-- until an admin turns it on for the application; while off, a static link only leads to the
-- client area's own login.
ALTER TABLE applications ADD COLUMN static_sign_in INTEGER NOT NULL DEFAULT 0;
