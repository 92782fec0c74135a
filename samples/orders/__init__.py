"""The order flow: charge inline, then confirmation email, invoice and analytics as jobs."""
