/** Support and business views for platform admins: one user, every org, the billing overview. */
export {};
