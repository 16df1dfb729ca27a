"""Storage: the engine, sessions, models and migrations. The only package that speaks SQL."""
