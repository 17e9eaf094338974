"""What a withdrawal destination is: one normal form, shared by the request and the address book, so an
address saved in the book and the same address typed into a request compare equal."""

from __future__ import annotations

from core.errors import InvalidInput
from custody.hd import checksum_address

ZERO_ADDRESS = "0x" + "0" * 40


def destination_address(text: str, field: str = "to_address") -> str:
    """The EIP-55 form of ``text`` (all one case is accepted; a wrong checksum is a typo and is refused,
    never "fixed"); 422 ``invalid_address`` otherwise, and for the zero address (``details`` names ``field``)."""
    try:
        address = checksum_address(text)
    except ValueError as error:
        raise InvalidInput(str(error), code="invalid_address", details={field: text[:100]}) from None
    if address == ZERO_ADDRESS:
        raise InvalidInput("The zero address burns what it receives.", code="invalid_address",
                           details={field: address})
    return address
