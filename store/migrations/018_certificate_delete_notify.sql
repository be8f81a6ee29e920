-- Router nodes reload their certificates on NOTIFY deck_certs. Rows deleted by a cascade (apps:destroy
-- takes the app's certificates with it) send none by themselves, so every DELETE announces itself here:
-- a node then stops serving a destroyed app's certificate and drops its key from its certs file.
CREATE FUNCTION announce_certificates_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF EXISTS (SELECT 1 FROM deleted_certificates) THEN
    PERFORM pg_notify('deck_certs', (SELECT min(domain) FROM deleted_certificates));
  END IF;
  RETURN NULL;
END
$$;

CREATE TRIGGER certificates_deleted AFTER DELETE ON certificates
  REFERENCING OLD TABLE AS deleted_certificates
  FOR EACH STATEMENT EXECUTE FUNCTION announce_certificates_deleted();
