/** Platform-wide views for platform admins: the build queue, alerts, security, and the audit trail. */
export {};
