//! Expansion of `#[derive(SyncEntity)]`.
//!
//! Owns the checks on the item the derive is put on and the `#[sync_entity(..)]` options,
//! the path the expansion uses to reach `wavesyncdb`, and the link-time registration it
//! expands to. It never reads the entity's columns or
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

/// The options of `#[sync_entity(..)]`.
struct Options {
    mode: Mode,
    /// `crate = "path"`: where `wavesyncdb` is, when the lookup cannot tell.
    krate: Option<syn::Path>,
}

/// Reads `#[sync_entity(local, crate = "..")]`; any other option is an error at its span.
fn options(input: &DeriveInput) -> syn::Result<Options> {
    let mut options = Options {
        mode: Mode::Synced,
        krate: None,
    };
    for attr in input
        .attrs
        .iter()
        .filter(|a| a.path().is_ident("sync_entity"))
    {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("local") {
                options.mode = Mode::Local;
                Ok(())
            } else if meta.path.is_ident("crate") {
                let path: syn::LitStr = meta.value()?.parse()?;
                options.krate = Some(path.parse().map_err(|_| {
                    syn::Error::new(
                        path.span(),
                        "`crate` takes the path of the `wavesyncdb` crate as a string, \
                         e.g. `#[sync_entity(crate = \"my_sync\")]`",
                    )
                })?);
                Ok(())
            } else {
                Err(meta.error(
                    "unknown `sync_entity` option; the options are `local` \
                     (`#[sync_entity(local)]` keeps the table on this peer) and `crate` \
                     (`#[sync_entity(crate = \"path\")]` when `wavesyncdb` is renamed)",
                ))
            }
        })?;
    }
    Ok(options)
}

/// The path to `wavesyncdb` from the crate being compiled: the `crate = ".."` option if
/// given, else the name the crate's `Cargo.toml` gives the `wavesyncdb` dependency (so a
/// renamed dependency works), else `::wavesyncdb`.
///
/// When the lookup says the derive runs inside `wavesyncdb`'s own package, it is one of
/// that package's examples or doc tests (the library itself never derives), which reach
/// the library by its name.
fn wavesyncdb_path(krate: Option<syn::Path>) -> TokenStream {
    if let Some(path) = krate {
        return quote!(#path);
    }
    match proc_macro_crate::crate_name("wavesyncdb") {
        Ok(proc_macro_crate::FoundCrate::Name(name)) => {
            let ident = syn::Ident::new(&name, proc_macro2::Span::call_site());
            quote!(::#ident)
        }
        Ok(proc_macro_crate::FoundCrate::Itself) | Err(_) => quote!(::wavesyncdb),
    }
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
    let options = options(&input)?;
    let wavesyncdb = wavesyncdb_path(options.krate);
    let register = match options.mode {
        Mode::Synced => quote!(builder.register::<Entity>()),
        Mode::Local => quote!(builder.register_local::<Entity>()),
    };
    Ok(quote! {
        const _: () = {
            fn __wavesyncdb_register(
                builder: #wavesyncdb::SchemaBuilder<'_>,
            ) -> #wavesyncdb::SchemaBuilder<'_> {
                #register
            }
            #wavesyncdb::__private::inventory::submit! {
                #wavesyncdb::__private::EntityRegistration {
                    module_path: ::core::module_path!(),
                    register: __wavesyncdb_register,
                }
            }
        };
    })
}
