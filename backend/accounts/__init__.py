"""Users, passwords, second factors, devices: who may sign in, and from what."""
