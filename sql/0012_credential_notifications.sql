-- Processes cache the rows behind client certificates (antaca_api/credentials.py) and must hear of
-- every change to them at once, whoever makes it (an endpoint of any process, or an operator's SQL).
-- A notification is delivered when the changing transaction commits; its payload is the table's name.
CREATE FUNCTION notify_credential_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('antaca_credentials', TG_TABLE_NAME);
    RETURN NULL;
END $$;

CREATE TRIGGER partner_certificates_changed AFTER UPDATE OR DELETE OR TRUNCATE ON partner_certificates
    FOR EACH STATEMENT EXECUTE FUNCTION notify_credential_change();
CREATE TRIGGER network_certificates_changed AFTER UPDATE OR DELETE OR TRUNCATE ON network_certificates
    FOR EACH STATEMENT EXECUTE FUNCTION notify_credential_change();
CREATE TRIGGER partners_changed AFTER UPDATE OR DELETE OR TRUNCATE ON partners
    FOR EACH STATEMENT EXECUTE FUNCTION notify_credential_change();
CREATE TRIGGER networks_changed AFTER UPDATE OR DELETE OR TRUNCATE ON networks
    FOR EACH STATEMENT EXECUTE FUNCTION notify_credential_change();
