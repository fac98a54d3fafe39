"""Wire-level tests of the SuperOffice connector and emulator."""
