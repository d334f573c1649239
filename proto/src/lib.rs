//! Guichet's contracts: the protobuf messages and gRPC services of
//! `proto/guichet/v1`, and their mapping to and from the domain types.
#![forbid(unsafe_code)]

#[allow(clippy::all, clippy::unwrap_used)]
pub mod v1 {
    tonic::include_proto!("guichet.v1");
}

/// Every message and service, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/guichet_descriptor.bin"));

pub mod convert;

/// Messages a service stores as bytes, read back with `TryFrom<Vec<u8>>`
/// (`#[sqlx(try_from = "Vec<u8>")]`): decoding fails loudly, so damaged
/// bytes are an error rather than an empty message.
macro_rules! stored_as_bytes {
    ($($message:ident),+ $(,)?) => {$(
        impl TryFrom<Vec<u8>> for v1::$message {
            type Error = prost::DecodeError;

            fn try_from(bytes: Vec<u8>) -> Result<Self, Self::Error> {
                prost::Message::decode(bytes.as_slice())
            }
        }
    )+};
}

stored_as_bytes!(Dossier, Site, Contact, PostalAddress, Receipt);
