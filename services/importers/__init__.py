"""Importers for outside files (Synthea CSV, CSV/Excel, FHIR R4, HL7 v2, survey CSV) behind one registry."""
