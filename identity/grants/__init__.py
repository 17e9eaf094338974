"""Role grants: a privileged role (operator, compliance, admin) is given by two admins, never one."""
