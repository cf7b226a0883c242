//! Expansion of `#[derive(SyncEntity)]`.
//!
//! Owns the checks on the item the derive is put on and the `#[sync_entity(..)]` options,
//! and the link-time registration it expands to. It never reads the entity's columns or
//! keys: WaveSyncDB derives those from SeaORM's own metadata when the entity is
//! registered, so there is one source of truth.

use proc_macro2::TokenStream;
use quote::quote;
use syn::{Data, DeriveInput, Fields};

/// How the entity is registered.
enum Mode {
    Synced,
    Local,
}

/// Reads `#[sync_entity(local)]`; any other option is an error at its span.
fn mode(input: &DeriveInput) -> syn::Result<Mode> {
    let mut mode = Mode::Synced;
    for attr in input
        .attrs
        .iter()
        .filter(|a| a.path().is_ident("sync_entity"))
    {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("local") {
                mode = Mode::Local;
                Ok(())
            } else {
                Err(meta.error(
                    "unknown `sync_entity` option; the only option is `local` \
                     (`#[sync_entity(local)]` keeps the table on this peer)",
                ))
            }
        })?;
    }
    Ok(mode)
}

/// The registration of the `Entity` next to the struct the derive is on.
pub(crate) fn expand(input: DeriveInput) -> syn::Result<TokenStream> {
    match &input.data {
        Data::Struct(data) if matches!(data.fields, Fields::Named(_)) => {}
        Data::Struct(_) => {
            return Err(syn::Error::new_spanned(
                &input.ident,
                "`SyncEntity` goes on a SeaORM `Model` struct with named fields, \
                 next to `DeriveEntityModel`",
            ));
        }
        Data::Enum(data) => {
            return Err(syn::Error::new(
                data.enum_token.span,
                "`SyncEntity` cannot be derived for an enum; put it on the entity's \
                 `Model` struct, next to `DeriveEntityModel`",
            ));
        }
        Data::Union(data) => {
            return Err(syn::Error::new(
                data.union_token.span,
                "`SyncEntity` cannot be derived for a union; put it on the entity's \
                 `Model` struct, next to `DeriveEntityModel`",
            ));
        }
    }
    if !input.generics.params.is_empty() {
        return Err(syn::Error::new_spanned(
            &input.generics,
            "`SyncEntity` cannot be derived for a generic struct: a SeaORM `Model` has none",
        ));
    }
    let register = match mode(&input)? {
        Mode::Synced => quote!(builder.register::<Entity>()),
        Mode::Local => quote!(builder.register_local::<Entity>()),
    };
    Ok(quote! {
        const _: () = {
            fn __wavesyncdb_register(
                builder: ::wavesyncdb::SchemaBuilder<'_>,
            ) -> ::wavesyncdb::SchemaBuilder<'_> {
                #register
            }
            ::wavesyncdb::__private::inventory::submit! {
                ::wavesyncdb::__private::EntityRegistration {
                    module_path: ::core::module_path!(),
                    register: __wavesyncdb_register,
                }
            }
        };
    })
}
