-- A password an admin set (POST /users/:id/password, or the admin command line) is
-- temporary: the user must choose their own at the next login. The column keeps the hash of
-- the temporary password; it is in force exactly while password_hash is still that hash, so
-- every other way a password changes (change-password, a reset) ends it without knowing of
-- it, and no flag can outlive the password it was about. (Login stops before it would
-- upgrade such a hash to new argon2 parameters.)
ALTER TABLE users ADD COLUMN temporary_password_hash text;
