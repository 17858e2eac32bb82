"""The pure rules of outreach: values in, values out; no clock, no database, no network."""
