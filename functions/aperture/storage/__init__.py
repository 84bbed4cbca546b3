"""The only code that talks to Cloud Storage, Firestore and Pub/Sub: one repository per collection or bucket."""
