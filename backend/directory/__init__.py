"""The national MSSanté directory (Annuaire Santé): import, local index, search, FHIR look-ups."""
