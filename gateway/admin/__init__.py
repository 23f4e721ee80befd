"""Operations: the `exgateway` management command (health and metrics later)."""
