# isopool — node-gyp build of the same targets as CMakeLists.txt (the default
# build is cmake-js: `npm run build:native`). Use with local headers, never a
# download:  node-gyp rebuild --nodedir=/usr   (or nodedir in ~/.npmrc)
# Output: build/Release/isopool.node, found by require('bindings')('isopool').
{
  'variables': {
    # native/core/*.cc (no Node-API) and native/binding/*.cc (the Node-API glue)
    'isopool_core_sources': [
      '<!@(node -p "require(\'fs\').readdirSync(\'native/core\').filter(f => f.endsWith(\'.cc\')).map(f => \'native/core/\' + f).join(\' \')")',
    ],
    'isopool_binding_sources': [
      '<!@(node -p "require(\'fs\').readdirSync(\'native/binding\').filter(f => f.endsWith(\'.cc\')).map(f => \'native/binding/\' + f).join(\' \')")',
    ],
  },
  'target_defaults': {
    'cflags!': ['-fno-exceptions', '-fno-rtti'],
    'cflags_cc!': ['-fno-exceptions', '-fno-rtti'],
    'cflags': ['-fvisibility=hidden', '-fPIC', '-Wall', '-Wextra'],
    'cflags_cc': ['-std=c++17', '-fvisibility=hidden', '-fvisibility-inlines-hidden', '-O2'],
    'include_dirs': ['native/core'],
    'xcode_settings': {
      'GCC_ENABLE_CPP_EXCEPTIONS': 'YES',
      'GCC_ENABLE_CPP_RTTI': 'YES',
      'GCC_SYMBOLS_PRIVATE_EXTERN': 'YES',
      'CLANG_CXX_LANGUAGE_STANDARD': 'c++17',
    },
  },
  'targets': [
    {
      'target_name': 'isopool_core',
      'type': 'static_library',
      'sources': ['<@(isopool_core_sources)'],
      'link_settings': { 'libraries': ['-lpthread', '-ldl'] },
    },
    {
      'target_name': 'isopool',
      'sources': ['<@(isopool_binding_sources)'],
      'dependencies': [
        'isopool_core',
        "<!(node -p \"require('node-addon-api').targets\"):node_addon_api_except",
      ],
      'defines': ['NAPI_VERSION=8'],
      'conditions': [
        ['OS=="linux"', { 'ldflags': ['-Wl,-z,nodelete'] }],
      ],
    },
  ],
}
