"""oVirt's wire formats: rendering representations as XML or JSON and parsing request bodies."""
